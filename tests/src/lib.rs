//! Test fixtures shared by lane's end-to-end tests: a tiny gRPC service, `lane.test.Greeter`, with a
//! unary `Hello` method, written by hand over tonic (no protoc, no codegen).
//!
//! The server answers `Hello { name }` with `HelloReply { message: "hello <name> from <server name>",
//! server, lane }` where `lane` is the `x-lane` value the request arrived with, so a test can see
//! which instance served it and that the lane header travelled through the router.

pub mod apiserver;
pub mod apollo;
pub mod consul;
pub mod kube;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{IntoRequest, Status};

/// The gRPC service name.
pub const SERVICE: &str = "lane.test.Greeter";
/// The path of the unary method.
pub const HELLO_PATH: &str = "/lane.test.Greeter/Hello";

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
    /// The `--name` of the server that answered.
    #[prost(string, tag = "2")]
    pub server: String,
    /// The `x-lane` request header as the server received it (empty if absent).
    #[prost(string, tag = "3")]
    pub lane: String,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// The server side: a tower service that tonic's transport can serve.
#[derive(Clone)]
pub struct GreeterServer {
    name: Arc<str>,
}

impl GreeterServer {
    pub fn new(name: &str) -> Self {
        GreeterServer { name: name.into() }
    }
}

struct Hello(Arc<str>);

impl tonic::server::UnaryService<HelloRequest> for Hello {
    type Response = HelloReply;
    type Future = BoxFuture<tonic::Response<HelloReply>, Status>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move {
            let lane = request
                .metadata()
                .get("x-lane")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let name = request.into_inner().name;
            let mut reply = tonic::Response::new(HelloReply {
                message: format!("hello {name} from {server}"),
                server: server.to_string(),
                lane,
            });
            if let Ok(v) = server.parse() {
                reply.metadata_mut().insert("x-greeter", v);
            }
            Ok(reply)
        })
    }
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for GreeterServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() == HELLO_PATH {
            let hello = Hello(self.name.clone());
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(hello, req).await)
            })
        } else {
            let path = req.uri().path().to_owned();
            Box::pin(
                async move { Ok(Status::unimplemented(format!("no method {path}")).into_http()) },
            )
        }
    }
}

impl tonic::server::NamedService for GreeterServer {
    const NAME: &'static str = SERVICE;
}

/// Serves the greeter named `name` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    name: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(GreeterServer::new(name), incoming, shutdown)
        .await
}

/// The client side.
#[derive(Clone)]
pub struct GreeterClient {
    inner: tonic::client::Grpc<Channel>,
}

impl GreeterClient {
    pub fn new(channel: Channel) -> Self {
        GreeterClient {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    /// Connects to `addr` (`http://127.0.0.1:7080`) while naming `authority` in requests (the
    /// `:authority` the lane router routes by, e.g. `greeter.demo.localhost:7080`).
    pub async fn connect_via(
        addr: &str,
        authority: Option<&str>,
    ) -> Result<Self, tonic::transport::Error> {
        let mut endpoint = Endpoint::from_shared(addr.to_owned())?;
        if let Some(authority) = authority {
            let origin: Uri = format!("http://{authority}")
                .parse()
                .expect("an authority makes a valid URI");
            endpoint = endpoint.origin(origin);
        }
        Ok(GreeterClient::new(endpoint.connect().await?))
    }

    pub async fn hello(
        &mut self,
        request: impl IntoRequest<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("service was not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(HELLO_PATH);
        self.inner
            .unary(
                request.into_request(),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await
    }
}
