//! The loopback HTTP plumbing every test server here shares: the accept loop, shutdown, and
//! building responses.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::oneshot;

pub(crate) type Response = hyper::Response<Full<Bytes>>;

/// Binds `addr` and serves every request with `handler` on the current runtime, over HTTP/1.1
/// or HTTP/2, until the returned sender is used or dropped.
pub(crate) async fn serve<H, F>(
    addr: &str,
    handler: H,
) -> std::io::Result<(SocketAddr, oneshot::Sender<()>)>
where
    H: Fn(hyper::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (tx, mut shutdown) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                _ = &mut shutdown => return,
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, tx))
}

/// A response with a status, headers (invalid ones are skipped) and a body.
pub(crate) fn response(
    status: u16,
    headers: &[(&str, String)],
    body: impl Into<Bytes>,
) -> Response {
    let mut resp = hyper::Response::new(Full::new(body.into()));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}
