//! The write gate of the `watch` mode: a layer of the Kubernetes client that lets a write
//! (anything but GET and HEAD) leave the process only while this replica holds the leader Lease,
//! and cuts a write in flight the moment the Lease lapses. Two leaders must never write at once,
//! and a leader that could not renew does not know it is still one; so the gate is enforced
//! where requests are sent, not in each caller.
//!
//! The Lease keeper ([`crate::watch::lease`]) moves the gate's "open until" instant forward on
//! each renewal, and closes it when the Lease is lost or released.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Method, Request, Response};
use tokio::sync::watch;

use crate::cluster::budget::Cut;

/// Opens and closes a [`WriteGate`]: held by whoever keeps the Lease.
#[derive(Debug)]
pub struct GateKeeper(watch::Sender<Option<Instant>>);

/// Whether writes may be sent, and until when.
#[derive(Debug, Clone)]
pub struct WriteGate(watch::Receiver<Option<Instant>>);

/// A closed gate and its keeper.
pub fn gate() -> (GateKeeper, WriteGate) {
    let (tx, rx) = watch::channel(None);
    (GateKeeper(tx), WriteGate(rx))
}

impl GateKeeper {
    /// Lets writes through until `until` (a later call may move it either way).
    pub fn open_until(&self, until: Instant) {
        self.0.send_replace(Some(until));
    }

    /// Stops every write, those in flight included.
    pub fn close(&self) {
        self.0.send_replace(None);
    }

    /// A gate that follows this keeper.
    pub fn gate(&self) -> WriteGate {
        WriteGate(self.0.subscribe())
    }
}

impl WriteGate {
    /// Whether a write may start now.
    pub fn is_open(&self) -> bool {
        self.0.borrow().is_some_and(|until| until > Instant::now())
    }

    /// Completes when the gate is closed: at once if it is, else when its time runs out
    /// without a renewal, or when the keeper closes it (or is dropped).
    pub async fn closed(&self) {
        let mut rx = self.0.clone();
        loop {
            let until = *rx.borrow_and_update();
            match until {
                Some(t) if t > Instant::now() => {
                    tokio::select! {
                        () = tokio::time::sleep_until(t.into()) => {}
                        changed = rx.changed() => if changed.is_err() { return },
                    }
                }
                _ => return,
            }
        }
    }

    /// Completes when the gate opens.
    pub async fn opened(&self) {
        let mut rx = self.0.clone();
        loop {
            if self.is_open() {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The layer that puts a [`WriteGate`] in front of a client's service.
#[derive(Debug, Clone)]
pub struct GateLayer(pub WriteGate);

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// A service whose writes pass only through an open gate.
#[derive(Debug, Clone)]
pub struct Gated<S> {
    inner: S,
    gate: WriteGate,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn not_leader() -> BoxError {
    Box::new(Cut::NotLeader)
}

/// Reads never change the cluster: they pass whatever the gate says.
fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

impl<S, B, ResBody> tower_service::Service<Request<B>> for Gated<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ResBody>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if is_read(req.method()) {
            let call = self.inner.call(req);
            return Box::pin(async move { call.await.map_err(Into::into) });
        }
        if !self.gate.is_open() {
            return Box::pin(async { Err(not_leader()) });
        }
        let call = self.inner.call(req);
        let gate = self.gate.clone();
        Box::pin(async move {
            tokio::select! {
                r = call => r.map_err(Into::into),
                () = gate.closed() => Err(not_leader()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tower_service::Service;

    /// A service that answers after `delay`, counting the calls that reached it.
    #[derive(Clone)]
    struct Slow {
        delay: Duration,
        reached: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Service<Request<()>> for Slow {
        type Response = Response<()>;
        type Error = BoxError;
        type Future = BoxFuture<Result<Response<()>, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            self.reached
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(Response::new(()))
            })
        }
    }

    fn request(method: Method) -> Request<()> {
        Request::builder().method(method).body(()).unwrap()
    }

    fn is_not_leader(e: &BoxError) -> bool {
        e.downcast_ref::<Cut>() == Some(&Cut::NotLeader)
    }

    #[tokio::test]
    async fn writes_pass_only_while_open_and_reads_always() {
        let (keeper, gate) = gate();
        let slow = Slow {
            delay: Duration::from_millis(10),
            reached: Default::default(),
        };
        let mut svc = tower_layer::Layer::layer(&GateLayer(gate), slow.clone());
        let e = svc.call(request(Method::PUT)).await.unwrap_err();
        assert!(is_not_leader(&e), "{e}");
        assert_eq!(
            slow.reached.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a closed gate sends nothing"
        );
        svc.call(request(Method::GET)).await.unwrap();
        keeper.open_until(Instant::now() + Duration::from_secs(5));
        svc.call(request(Method::PATCH)).await.unwrap();
        keeper.open_until(Instant::now() - Duration::from_millis(1));
        assert!(is_not_leader(
            &svc.call(request(Method::DELETE)).await.unwrap_err()
        ));
    }

    #[tokio::test]
    async fn a_write_in_flight_is_cut_when_the_time_runs_out_unless_renewed() {
        let (keeper, gate) = gate();
        let slow = Slow {
            delay: Duration::from_millis(300),
            reached: Default::default(),
        };
        let mut svc = tower_layer::Layer::layer(&GateLayer(gate), slow);
        keeper.open_until(Instant::now() + Duration::from_millis(100));
        let started = Instant::now();
        let e = svc.call(request(Method::POST)).await.unwrap_err();
        assert!(is_not_leader(&e));
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        // Renewed while in flight: it completes.
        keeper.open_until(Instant::now() + Duration::from_millis(100));
        let call = svc.call(request(Method::POST));
        let renew = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            keeper.open_until(Instant::now() + Duration::from_secs(5));
        };
        let (r, ()) = tokio::join!(call, renew);
        r.unwrap();
        // Closed by the keeper while in flight: cut at once.
        let call = svc.call(request(Method::POST));
        let close = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            keeper.close();
        };
        let (r, ()) = tokio::join!(call, close);
        assert!(is_not_leader(&r.unwrap_err()));
    }
}
