//! gRPC for the tests: an echo service (tonic, h2c, on a tokio runtime in background threads)
//! as the upstream, and client calls through tonic, all without protoc: the prost messages
//! and the service plumbing are written by hand (what tonic-build would generate).
//!
//! The echo service, `echo.Echo`:
//! - `Unary`: echoes `message`; sleeps `sleep_ms` first; `message == "notfound"` fails with
//!   NOT_FOUND and a message with a non-ASCII character; the reply carries the
//!   `x-forwarded-for`, `x-api-key` and `te` the service received.
//! - `ServerStream`: `count` replies `message-0`, `message-1`, ...
//! - `ClientStream`: one reply joining every message with ","
//! - `Bidi`: one reply per message, as soon as it arrives.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(uint64, tag = "2")]
    pub sleep_ms: u64,
    #[prost(uint32, tag = "3")]
    pub count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(string, tag = "2")]
    pub forwarded_for: String,
    #[prost(string, tag = "3")]
    pub api_key: String,
    #[prost(string, tag = "4")]
    pub te: String,
}

pub fn req(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        sleep_ms: 0,
        count: 0,
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send + 'static>>;

fn meta(r: &Request<impl Sized>, name: &str) -> String {
    r.metadata()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

struct UnarySvc;
impl tonic::server::UnaryService<EchoRequest> for UnarySvc {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;
    fn call(&mut self, r: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let reply = EchoReply {
                message: r.get_ref().message.clone(),
                forwarded_for: meta(&r, "x-forwarded-for"),
                api_key: meta(&r, "x-api-key"),
                te: meta(&r, "te"),
            };
            let m = r.into_inner();
            if m.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(m.sleep_ms)).await;
            }
            if m.message == "notfound" {
                return Err(Status::not_found("no such echo: caf\u{e9}"));
            }
            Ok(Response::new(reply))
        })
    }
}

struct ServerStreamSvc;
impl tonic::server::ServerStreamingService<EchoRequest> for ServerStreamSvc {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Response<ReplyStream>, Status>;
    fn call(&mut self, r: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let m = r.into_inner();
            let items: Vec<Result<EchoReply, Status>> = (0..m.count)
                .map(|i| {
                    Ok(EchoReply {
                        message: format!("{}-{i}", m.message),
                        ..Default::default()
                    })
                })
                .collect();
            let s: ReplyStream = Box::pin(tokio_stream::iter(items));
            Ok(Response::new(s))
        })
    }
}

struct ClientStreamSvc;
impl tonic::server::ClientStreamingService<EchoRequest> for ClientStreamSvc {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;
    fn call(&mut self, r: Request<Streaming<EchoRequest>>) -> Self::Future {
        Box::pin(async move {
            let mut s = r.into_inner();
            let mut all = Vec::new();
            while let Some(m) = s.next().await {
                all.push(m?.message);
            }
            Ok(Response::new(EchoReply {
                message: all.join(","),
                ..Default::default()
            }))
        })
    }
}

struct BidiSvc;
impl tonic::server::StreamingService<EchoRequest> for BidiSvc {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Response<ReplyStream>, Status>;
    fn call(&mut self, r: Request<Streaming<EchoRequest>>) -> Self::Future {
        Box::pin(async move {
            let s = r.into_inner().map(|m| {
                m.map(|m| EchoReply {
                    message: format!("echo:{}", m.message),
                    ..Default::default()
                })
            });
            let s: ReplyStream = Box::pin(s);
            Ok(Response::new(s))
        })
    }
}

/// The `echo.Echo` service, routed by path.
#[derive(Clone, Default)]
pub struct EchoServer;

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = "echo.Echo";
}

impl<B> Service<http::Request<B>> for EchoServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let codec = || tonic_prost::ProstCodec::<EchoReply, EchoRequest>::default();
        // By method name, whatever the service part of the path (routes in the tests use
        // several service names for one upstream).
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        match method.as_str() {
            "Unary" => {
                Box::pin(
                    async move { Ok(tonic::server::Grpc::new(codec()).unary(UnarySvc, req).await) },
                )
            }
            "ServerStream" => Box::pin(async move {
                Ok(tonic::server::Grpc::new(codec())
                    .server_streaming(ServerStreamSvc, req)
                    .await)
            }),
            "ClientStream" => Box::pin(async move {
                Ok(tonic::server::Grpc::new(codec())
                    .client_streaming(ClientStreamSvc, req)
                    .await)
            }),
            "Bidi" => Box::pin(async move {
                Ok(tonic::server::Grpc::new(codec())
                    .streaming(BidiSvc, req)
                    .await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// Accepted connections, counted.
struct Incoming {
    listener: tokio::net::TcpListener,
    accepts: Arc<AtomicUsize>,
}

impl Stream for Incoming {
    type Item = std::io::Result<tokio::net::TcpStream>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.listener.poll_accept(cx) {
            Poll::Ready(Ok((s, _))) => {
                self.accepts.fetch_add(1, Ordering::SeqCst);
                Poll::Ready(Some(Ok(s)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A tokio runtime for clients and upstreams (two worker threads).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The echo service on an ephemeral loopback port (h2c), served on `rt`.
pub struct GrpcUpstream {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
}

impl GrpcUpstream {
    pub fn start(rt: &tokio::runtime::Runtime) -> GrpcUpstream {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let incoming = Incoming {
            listener,
            accepts: accepts.clone(),
        };
        rt.spawn(async move {
            // No router: every service name reaches the echo service.
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(EchoServer, incoming)
                .await;
        });
        GrpcUpstream { addr, accepts }
    }

    pub fn connections(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// A gRPC client over h2c to `addr` (the gateway).
pub async fn client(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the gateway");
    tonic::client::Grpc::new(ch)
}

fn codec() -> tonic_prost::ProstCodec<EchoRequest, EchoReply> {
    tonic_prost::ProstCodec::default()
}

fn path(method: &str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::try_from(format!("/echo.Echo/{method}")).unwrap()
}

/// Adds `metadata` (name, value) pairs to a request.
fn with_meta<T>(mut r: Request<T>, metadata: &[(&'static str, &str)]) -> Request<T> {
    for (k, v) in metadata {
        r.metadata_mut().insert(*k, v.parse().unwrap());
    }
    r
}

pub async fn unary(
    addr: SocketAddr,
    m: EchoRequest,
    metadata: &[(&'static str, &str)],
    timeout: Option<Duration>,
) -> Result<Response<EchoReply>, Status> {
    let mut c = client(addr).await;
    c.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut r = with_meta(Request::new(m), metadata);
    if let Some(t) = timeout {
        r.set_timeout(t);
    }
    c.unary(r, path("Unary"), codec()).await
}

pub async fn server_stream(addr: SocketAddr, m: EchoRequest) -> Result<Vec<String>, Status> {
    let mut c = client(addr).await;
    c.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut s = c
        .server_streaming(Request::new(m), path("ServerStream"), codec())
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = s.next().await {
        out.push(r?.message);
    }
    Ok(out)
}

pub async fn client_stream(addr: SocketAddr, msgs: &[&str]) -> Result<String, Status> {
    let mut c = client(addr).await;
    c.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let items: Vec<EchoRequest> = msgs.iter().map(|m| req(m)).collect();
    let r = c
        .client_streaming(
            Request::new(tokio_stream::iter(items)),
            path("ClientStream"),
            codec(),
        )
        .await?;
    Ok(r.into_inner().message)
}

/// Messages sent one at a time down a channel, for a stream the test feeds as it goes.
pub struct Feed(pub tokio::sync::mpsc::Receiver<EchoRequest>);

impl Stream for Feed {
    type Item = EchoRequest;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EchoRequest>> {
        self.0.poll_recv(cx)
    }
}

/// A bidirectional call that sends each message only after the echo of the previous one came
/// back: it completes only if the gateway relays both directions at once.
pub async fn bidi_lockstep(addr: SocketAddr, msgs: &[&str]) -> Result<Vec<String>, Status> {
    let mut c = client(addr).await;
    c.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(req(msgs[0])).await.unwrap();
    let mut replies = c
        .streaming(Request::new(Feed(rx)), path("Bidi"), codec())
        .await?
        .into_inner();
    let mut out = Vec::new();
    for next in msgs.iter().skip(1) {
        match replies.next().await {
            Some(r) => out.push(r?.message),
            None => return Ok(out),
        }
        tx.send(req(next)).await.unwrap();
    }
    drop(tx);
    while let Some(r) = replies.next().await {
        out.push(r?.message);
    }
    Ok(out)
}

/// What a raw HTTP/2 gRPC call got back: the response head's fields, the body bytes, the
/// trailers (empty for a Trailers-Only answer).
pub struct RawReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub trailers: http::HeaderMap,
}

impl RawReply {
    /// `grpc-status` from the trailers, or from the head of a Trailers-Only answer.
    /// The first message of the body (gRPC framing: flag, 4-byte length, message).
    pub fn reply(&self) -> Option<EchoReply> {
        use prost::Message;
        let len = u32::from_be_bytes(self.body.get(1..5)?.try_into().ok()?) as usize;
        EchoReply::decode(self.body.get(5..5 + len)?).ok()
    }

    /// A field from the trailers, or from the head of a Trailers-Only answer.
    pub fn status_field(&self, name: &str) -> Option<String> {
        let v = self.trailers.get(name).or(self.headers.get(name))?;
        Some(v.to_str().ok()?.to_string())
    }

    pub fn grpc_status(&self) -> Option<String> {
        let v = self
            .trailers
            .get("grpc-status")
            .or(self.headers.get("grpc-status"))?;
        Some(v.to_str().ok()?.to_string())
    }
}

/// One unary gRPC call made with the h2 crate directly (no client-side deadline, no retries):
/// `fields` are sent as they are.
pub async fn raw_call(
    addr: SocketAddr,
    path: &str,
    fields: &[(&str, &str)],
    m: &EchoRequest,
) -> Result<RawReply, h2::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw_call_on(tcp, &addr.to_string(), path, fields, m).await
}

/// `raw_call` over an established connection (plain or TLS with ALPN h2).
pub async fn raw_call_on<T>(
    io: T,
    authority: &str,
    path: &str,
    fields: &[(&str, &str)],
    m: &EchoRequest,
) -> Result<RawReply, h2::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use prost::Message;
    let (send, conn) = h2::client::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await?;
    let mut r = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in fields {
        r = r.header(*k, *v);
    }
    let (resp, mut body) = send.send_request(r.body(()).unwrap(), false)?;
    let payload = m.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    body.send_data(frame.into(), true)?;
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let (parts, mut recv) = resp.into_parts();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await?.unwrap_or_default();
    Ok(RawReply {
        status,
        headers: parts.headers,
        body: out,
        trailers,
    })
}

/// An HTTP/2 upstream that answers every call with an empty OK gRPC response after `delay`,
/// ignoring `grpc-timeout` (tonic's server would enforce the deadline itself).
pub fn start_sleepy(rt: &tokio::runtime::Runtime, delay: Duration) -> SocketAddr {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let resp = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "0")
                            .body(())
                            .unwrap();
                        let _ = respond.send_response(resp, true);
                    });
                }
            });
        }
    });
    addr
}
