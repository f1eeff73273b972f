//! WebSocket end to end through the router: a real WebSocket server and client (tokio-tungstenite)
//! on loopback. The upgrade request is routed by its lane header like any other; then messages flow
//! both ways through the tunnel, and a close handshake ends it.

mod common;

use std::net::SocketAddr;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A WebSocket server named `name`: first says `<name> saw lane <x-lane>`, then echoes each text
/// message as `<name>: <text>` and binary messages reversed, and answers a close with a close.
// The handshake callback's error type is tungstenite's (an HTTP response), not ours.
#[allow(clippy::result_large_err)]
async fn ws_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut lane = String::new();
                let seen = |req: &Request, resp: Response| {
                    lane = req
                        .headers()
                        .get("x-lane")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_else(|| "-".into());
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, seen).await else {
                    return;
                };
                ws.send(Message::text(format!("{name} saw lane {lane}")))
                    .await
                    .unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    let reply = match msg {
                        Message::Text(t) => Message::text(format!("{name}: {}", t.as_str())),
                        Message::Binary(b) => {
                            Message::binary(b.iter().rev().copied().collect::<Vec<u8>>())
                        }
                        // tungstenite answers pings and closes itself.
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A WebSocket client connected through the router at `router` to `host`, with `lane`.
async fn connect(
    router: SocketAddr,
    host: &str,
    lane: Option<&str>,
) -> (
    tokio_tungstenite::WebSocketStream<TcpStream>,
    http::Response<Option<Vec<u8>>>,
) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{host}/chat").into_client_request().unwrap();
    if let Some(lane) = lane {
        req.headers_mut().insert("x-lane", lane.parse().unwrap());
    }
    let stream = TcpStream::connect(router).await.unwrap();
    tokio_tungstenite::client_async(req, stream).await.unwrap()
}

#[tokio::test]
async fn websocket_upgrade_messages_and_close_through_the_router() {
    let base = ws_server("base").await;
    let lane = ws_server("lane-w").await;
    let r = router(table(
        vec![
            ep("demo.ws", "baseline", true, base),
            ep("demo.ws", "feature-w", true, lane),
        ],
        &[],
        1,
    ))
    .await;
    let host = "ws.demo.localhost";

    for (asked, server, served_by) in [
        (None, "base", "demo.ws@baseline"),
        (Some("feature-w"), "lane-w", "demo.ws@feature-w"),
        (Some("other"), "base", "demo.ws@baseline"),
    ] {
        let (mut ws, resp) = connect(r.addr, host, asked).await;
        assert_eq!(resp.status(), 101);
        assert_eq!(resp.headers()["x-lane-served-by"], served_by);
        let hello = ws.next().await.unwrap().unwrap();
        assert_eq!(
            hello.into_text().unwrap().as_str(),
            format!("{server} saw lane {}", asked.unwrap_or("-"))
        );
        for i in 0..3 {
            ws.send(Message::text(format!("ping {i}"))).await.unwrap();
            let got = ws.next().await.unwrap().unwrap();
            assert_eq!(
                got.into_text().unwrap().as_str(),
                format!("{server}: ping {i}")
            );
        }
        // A large binary message crosses in many TCP segments.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(big.clone())).await.unwrap();
        let got = ws.next().await.unwrap().unwrap().into_data();
        assert_eq!(got.len(), big.len());
        assert!(got.iter().eq(big.iter().rev()));

        // The close handshake goes through; then the tunnel ends.
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        let mut closed = false;
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(frame)) => {
                    assert_eq!(frame.unwrap().code, CloseCode::Normal);
                    closed = true;
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(closed, "the server's close frame came back");
    }

    let traffic: Vec<(String, u64)> = r
        .router
        .traffic()
        .into_iter()
        .map(|t| (t.lane.to_string(), t.requests))
        .collect();
    assert_eq!(
        traffic,
        [("baseline".to_owned(), 2), ("feature-w".to_owned(), 1)]
    );
}
