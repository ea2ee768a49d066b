//! The loopback HTTP plumbing every test server here shares: the accept loop, shutdown,
//! dropping every open connection at once, and building responses (whole or streamed).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) type Body = BoxBody<Bytes, Infallible>;
pub(crate) type Response = hyper::Response<Body>;

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
    // A receiver whose sender is gone never fires: connections live as long as their client.
    serve_killable(addr, handler, watch::channel(false).1).await
}

/// Like [`serve`], and every open connection is dropped (mid-response, as a crashed server
/// drops them) once `kill` turns true.
pub(crate) async fn serve_killable<H, F>(
    addr: &str,
    handler: H,
    kill: watch::Receiver<bool>,
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
            let mut kill = kill.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    Ok(_) = kill.wait_for(|k| *k) => {}
                }
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
    let mut resp = hyper::Response::new(Full::new(body.into()).boxed());
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

/// A response body fed chunk by chunk through a channel; it ends when the sender is dropped.
/// HTTP/1.1 sends it chunked, as the API server sends a watch.
pub(crate) struct ChannelBody(pub(crate) mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}
