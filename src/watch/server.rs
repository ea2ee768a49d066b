//! The HTTP port of the `watch` mode: `GET /healthz` (the process answers), `GET /readyz`
//! ([`Health`]) and `GET /metrics` ([`Metrics`]). HTTP/1 on hyper, which the tree already has
//! for its clients; one small task per connection.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::watch::health::Health;
use crate::watch::metrics::{CONTENT_TYPE, Metrics};

/// What the server reports from.
#[derive(Debug, Clone)]
pub struct Shared {
    pub health: Health,
    pub metrics: Metrics,
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// The answer to one request. Pure but for the clock.
pub fn answer(shared: &Shared, method: &Method, path: &str) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n".into());
    }
    match path {
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => match shared
            .health
            .ready(std::time::Instant::now(), jiff::Timestamp::now())
        {
            Ok(()) => text(StatusCode::OK, PLAIN, "ok\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => text(StatusCode::OK, CONTENT_TYPE, shared.metrics.encode()),
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

/// Serves `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Shared) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, usually: wait rather than spin.
                tracing::warn!("the HTTP server could not accept a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = answer(&shared, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            // A client that goes away mid-request is not worth a log line.
            let _ = conn.await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let shared = Shared {
            health: Health::default(),
            metrics: Metrics::new(),
        };
        let get = |path| answer(&shared, &Method::GET, path);
        assert_eq!(get("/healthz").status(), StatusCode::OK);
        assert_eq!(get("/readyz").status(), StatusCode::SERVICE_UNAVAILABLE);
        shared.health.api_ok();
        assert_eq!(get("/readyz").status(), StatusCode::OK);
        let m = get("/metrics");
        assert_eq!(m.status(), StatusCode::OK);
        assert_eq!(m.headers()[hyper::header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(get("/nope").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            answer(&shared, &Method::POST, "/healthz").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
