//! A bare HTTP client for the fake API server's own tests: plain requests, and watches read
//! line by line as they stream.
#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new(kube: &fake_kube::FakeKube) -> Self {
        Http {
            base: kube.url(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
        accept: &str,
        content_type: &str,
    ) -> hyper::Response<Incoming> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", "Bearer fake-token");
        if !accept.is_empty() {
            req = req.header("accept", accept);
        }
        if !body.is_empty() {
            req = req.header("content-type", content_type);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        self.client.request(req).await.unwrap()
    }

    /// Status and body of a plain request (JSON body).
    pub async fn send(&self, method: &str, path: &str, body: &str, accept: &str) -> (u16, String) {
        self.send_as(method, path, body, accept, "application/json")
            .await
    }

    /// Status and body of a request with a body of the given content type.
    pub async fn send_as(
        &self,
        method: &str,
        path: &str,
        body: &str,
        accept: &str,
        content_type: &str,
    ) -> (u16, String) {
        let resp = self.request(method, path, body, accept, content_type).await;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Opens a watch; its events are read with [`WatchStream::next_n`] and friends.
    pub async fn watch(&self, path: &str, accept: &str) -> WatchStream {
        let resp = self.request("GET", path, "", accept, "").await;
        WatchStream {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.into_body(),
            buf: Vec::new(),
            ended: false,
        }
    }
}

pub struct WatchStream {
    pub status: u16,
    headers: hyper::HeaderMap,
    body: Incoming,
    buf: Vec<u8>,
    ended: bool,
}

impl WatchStream {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// The next event, `None` once the stream ended (cleanly or not).
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("each line is one JSON event"));
            }
            if self.ended {
                assert!(self.buf.is_empty(), "a partial event at the end");
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                _ => self.ended = true,
            }
        }
    }

    /// The next `n` events, failing the test if they take more than 5 s.
    pub async fn next_n(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(5), self.next()).await {
                Ok(Some(e)) => out.push(e),
                Ok(None) => panic!("the stream ended after {out:?}"),
                Err(_) => panic!("waited 5 s for event {} after {out:?}", out.len() + 1),
            }
        }
        out
    }

    /// Every event until the stream ends.
    pub async fn rest(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }

    /// Whether no event arrives for `d`.
    pub async fn quiet_for(&mut self, d: Duration) -> bool {
        match tokio::time::timeout(d, self.next()).await {
            Err(_) => true,
            Ok(e) => {
                eprintln!("unexpected: {e:?}");
                false
            }
        }
    }
}
