//! The browser softphone's signalling: `GET /api/softphone`, a WebSocket opened by the
//! agent console with the session cookie of its login. While it is open the browser is
//! the phone of the user's agent: the ACD counts the agent as registered, and a call
//! offered to the agent rings the browser (not the desk SIP phone). Messages are JSON:
//! the server sends [`ToBrowser`] (`registered`, `ring`, `answer`, `hangup`, `error`),
//! the browser sends [`FromBrowser`] (`answer` with its SDP offer, `hangup`).
//!
//! Only users who work as an agent may open it; a page of another origin may not (the
//! `Origin` header must name this host).

use std::sync::Arc;

use axum::Extension;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ErrorBody};
use super::queues::AcdApi;
use crate::server::webrtc::{BrowserPhones, FromBrowser, ToBrowser};

/// The server's registered browsers (an axum extension set by the server).
#[derive(Debug, Clone)]
pub struct SoftphoneApi(pub Option<Arc<BrowserPhones>>);

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(softphone))
}

/// Whether the `Origin` of a WebSocket request (if any) is this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest == host)
}

#[utoipa::path(get, path = "/api/softphone", operation_id = "softphone", tag = "queues",
    summary = "WebSocket of the browser softphone: while open, the browser is the phone of the user's agent. Server → browser: ToBrowser JSON (registered, ring, answer, hangup, error); browser → server: FromBrowser JSON (answer with its SDP offer, hangup)",
    responses((status = 101, description = "switching to the WebSocket; its messages are ToBrowser", body = ToBrowser), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn softphone(
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    phones: Option<Extension<SoftphoneApi>>,
    acd: Option<Extension<AcdApi>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let phones = phones
        .and_then(|Extension(SoftphoneApi(p))| p)
        .ok_or_else(|| ApiError::not_found("softphone"))?;
    // The agent the user works as (the console's `me.agent ?? me.id`).
    let agent = match user.agent.clone() {
        Some(agent) => agent,
        None if user.has(crate::ticket::Role::Agent) => user.id.clone(),
        None => return Err(ApiError::forbidden("only an agent's user has a softphone")),
    };
    if !same_origin(&headers) {
        return Err(ApiError::forbidden(
            "the softphone opens only from this server's console",
        ));
    }
    let acd = acd.and_then(|Extension(AcdApi(a))| a);
    Ok(upgrade.on_upgrade(move |socket| session(socket, phones, agent, acd)))
}

async fn session(
    mut socket: WebSocket,
    phones: Arc<BrowserPhones>,
    agent: String,
    acd: Option<Arc<crate::server::acd::AcdShell>>,
) {
    let (device, mut rx) = phones.register(&agent);
    if let Some(acd) = acd.as_ref() {
        acd.registration_changed();
    }
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                let Ok(text) = serde_json::to_string(&out) else { continue };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                let reply = match serde_json::from_str::<FromBrowser>(text.as_str()) {
                    Ok(message) => phones.from_browser(&agent, device, message).await,
                    Err(e) => Some(ToBrowser::Error { leg: None, reason: format!("bad message: {e}") }),
                };
                if let Some(reply) = reply
                    && let Ok(text) = serde_json::to_string(&reply)
                    && socket.send(Message::Text(text.into())).await.is_err()
                {
                    break;
                }
            }
        }
    }
    phones.unregister(&agent, device);
    if let Some(acd) = acd.as_ref() {
        acd.registration_changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_host_s_pages_open_the_softphone() {
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:8443".parse().expect("header"));
        assert!(same_origin(&h));
        h.insert("origin", "https://127.0.0.1:8443".parse().expect("header"));
        assert!(same_origin(&h));
        h.insert("origin", "https://evil.example".parse().expect("header"));
        assert!(!same_origin(&h));
    }
}
