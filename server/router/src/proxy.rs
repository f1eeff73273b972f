//! `lane proxy`: a forward HTTP proxy for a developer's own requests (point `HTTP_PROXY` at it). It
//! sets the lane header to the lane chosen now (the closure is asked on every request, so a traffic
//! switch takes effect at once; [`LaneRef::Baseline`] removes the header) and forwards the request.
//!
//! Requests arrive in absolute form (`GET http://cart.shop.localhost:7080/x HTTP/1.1`), or as h2c
//! with a full `:authority`. `CONNECT` (HTTPS tunnelling) is answered 501: the proxy cannot add a
//! header to encrypted traffic. Names under `localhost` resolve to loopback without asking DNS
//! (RFC 6761), so `*.localhost` service hosts reach the local router.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use lane_core::LaneRef;

use crate::forward::{self, Clients, RouterBody, error_chain, strip_hop_by_hop, text_response};

/// Serves the forward proxy on `listener` until `shutdown` resolves. `header` is the lane header to
/// set; `lane` says which lane requests enter right now.
pub async fn serve(
    listener: tokio::net::TcpListener,
    header: HeaderName,
    lane: impl Fn() -> LaneRef + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(Proxy {
        header,
        lane,
        clients: Clients::new(
            LocalhostResolver(GaiResolver::new()),
            std::time::Duration::from_secs(5),
        ),
    });
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(state.handle(req).await) }
    });
    forward::accept_loop(listener, move || service.clone(), shutdown).await
}

struct Proxy<F> {
    header: HeaderName,
    lane: F,
    clients: Clients<LocalhostResolver>,
}

const CONNECT_REFUSED: &str = "lane proxy: CONNECT (HTTPS tunnelling) is not supported: the proxy \
cannot add the lane header to encrypted traffic. Send plain http:// requests through it (services \
behind the lane router speak plain HTTP), or set the lane header yourself.\n";

impl<F: Fn() -> LaneRef> Proxy<F> {
    async fn handle(&self, req: Request<Incoming>) -> Response<RouterBody> {
        if req.method() == Method::CONNECT {
            return text_response(StatusCode::NOT_IMPLEMENTED, CONNECT_REFUSED);
        }
        let uri = req.uri();
        let Some(authority) = uri.authority().cloned() else {
            if uri.path() == "/healthz" {
                return text_response(StatusCode::OK, "ok\n");
            }
            return text_response(
                StatusCode::BAD_REQUEST,
                "lane proxy: this is a forward proxy; send requests with an absolute URI \
                 (set HTTP_PROXY=http://<this address>), not to the proxy itself.\n",
            );
        };
        if uri.scheme_str() != Some("http") {
            return text_response(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "lane proxy: only http:// URIs can be forwarded, not `{}`\n",
                    uri.scheme_str().unwrap_or("")
                ),
            );
        }

        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        match (self.lane)() {
            LaneRef::Baseline => {
                parts.headers.remove(&self.header);
            }
            LaneRef::Lane(lane) => {
                if let Ok(value) = HeaderValue::from_str(lane.as_str()) {
                    parts.headers.insert(self.header.clone(), value);
                }
            }
        }
        if parts.version != Version::HTTP_2 {
            parts.version = Version::HTTP_11;
        }
        let client = self.clients.for_version(parts.version);
        let body = RouterBody::Upstream(body);
        match client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                let mut resp = resp.map(RouterBody::Upstream);
                strip_hop_by_hop(resp.headers_mut());
                resp
            }
            Err(e) => text_response(
                StatusCode::BAD_GATEWAY,
                format!(
                    "lane proxy: could not reach {authority}: {}\n",
                    error_chain(&e)
                ),
            ),
        }
    }
}

/// DNS, except that `localhost` and `*.localhost` are loopback (RFC 6761).
#[derive(Clone)]
struct LocalhostResolver(GaiResolver);

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for LocalhostResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Addrs>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if crate::host::is_loopback_name(name.as_str()) {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            return Box::pin(std::future::ready(Ok(vec![addr].into_iter())));
        }
        let lookup = self.0.call(name);
        Box::pin(async move { Ok(lookup.await?.collect::<Vec<_>>().into_iter()) })
    }
}
