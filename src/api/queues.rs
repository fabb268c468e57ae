//! Queues API: `GET /api/queues` (live snapshot per city), `GET /api/events` (SSE:
//! `agent_state`, `call_offered` screen-pops, `queue`), and
//! `POST /api/agents/{id}/sign_in|sign_out|pause|unpause|end_wrap_up` (`{"reason"}`
//! for pause).
//!
//! Everything needs an authenticated user, and everything is scoped by the user's unit
//! subtree (as `/api/orders` is): a city's queue, its agents and their calls are seen
//! only by users whose subtree holds the city (the city's users and the province's),
//! plus an agent's own state and screen-pops by that agent's user. An agent (the user
//! whose `[[users]] agent` names it, or whose id is the agent's) may only change their
//! own state; supervisors (督办岗) and province administrators may change the state of
//! the agents of the cities in their subtree. A screen-pop (`call_offered`) goes only to
//! the offered agent's user and to the supervisors and province administrators over its
//! city. Without a `[queues]` section these routes answer 404 (the consoles degrade on
//! it).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{CurrentUser, User};
use super::calls::oversees_city;
use super::error::{ApiError, ErrorBody};
use super::orders::OrdersContext;
use crate::queue::{AgentId, AgentState, PauseReason, QueueInput};
use crate::server::acd::{AcdShell, ConsoleEvent};

/// The server's ACD, if configured (an axum extension set by the server).
#[derive(Debug, Clone)]
pub struct AcdApi(pub Option<Arc<AcdShell>>);

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(events))
        .routes(routes!(change))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AgentView {
    id: String,
    name: String,
    state: String,
    pause_reason: Option<String>,
    on_duty: bool,
    answered_today: u32,
    /// The call of a ringing / on-call agent.
    call_id: Option<String>,
    /// When wrap-up ends (RFC 3339), in wrap-up.
    wrap_up_until: Option<String>,
    /// Milliseconds of wrap-up left (for consoles whose clock differs from ours).
    wrap_up_left_ms: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct QueueView {
    city: String,
    waiting: usize,
    longest_wait_secs: i64,
    agents: Vec<AgentView>,
    answered_today: u32,
    abandoned_today: u32,
}

fn acd_of(ext: Option<Extension<AcdApi>>) -> Result<Arc<AcdShell>, ApiError> {
    ext.and_then(|Extension(AcdApi(acd))| acd)
        .ok_or_else(|| ApiError::not_found("queues"))
}

#[utoipa::path(get, path = "/api/queues", operation_id = "list_queues", tag = "queues",
    summary = "Live queue snapshot of each city in the user's unit subtree: waiting calls, agents with state, call and wrap-up left",
    responses((status = 200, description = "one entry per city", body = Vec<QueueView>), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn list(
    axum::extract::State(state): axum::extract::State<AppState>,
    CurrentUser(user): CurrentUser,
    ext: Option<Extension<AcdApi>>,
) -> Result<Json<Vec<QueueView>>, ApiError> {
    let acd = acd_of(ext)?;
    let now = acd.now();
    let views = acd
        .snapshots()
        .into_iter()
        .filter(|q| oversees_city(&state.orders, &user, Some(q.city.as_str())))
        .map(|q| QueueView {
            city: q.city.as_str().to_string(),
            waiting: q.waiting.len(),
            longest_wait_secs: q.longest_wait_ms / 1000,
            agents: q
                .agents
                .into_iter()
                .map(|a| AgentView {
                    name: acd.agent_name(&a.agent),
                    id: a.agent.0,
                    pause_reason: match &a.state {
                        AgentState::Paused { reason } => Some(reason.0.clone()),
                        _ => None,
                    },
                    call_id: a.state.leg_call().map(|c| c.0.clone()),
                    wrap_up_until: match &a.state {
                        AgentState::WrapUp { until } => Some(until.to_rfc3339()),
                        _ => None,
                    },
                    wrap_up_left_ms: match &a.state {
                        AgentState::WrapUp { until } => {
                            Some((*until - now).num_milliseconds().max(0))
                        }
                        _ => None,
                    },
                    state: a.state.name().to_string(),
                    on_duty: a.on_duty,
                    answered_today: a.answered_today,
                })
                .collect(),
            answered_today: q.answered_today,
            abandoned_today: q.abandoned_today,
        })
        .collect();
    Ok(Json(views))
}

/// Whether `user` receives `event`: their own agent's, and the events of the cities in
/// their subtree (screen-pops of those only for supervisors and administrators).
fn sees(ctx: &OrdersContext, user: &User, event: &ConsoleEvent) -> bool {
    match event {
        ConsoleEvent::CallOffered { agent, city, .. } => {
            user.is_agent(agent)
                || (user.oversees_calls() && oversees_city(ctx, user, city.as_deref()))
        }
        ConsoleEvent::AgentState { agent, city, .. } => {
            user.is_agent(agent) || oversees_city(ctx, user, city.as_deref())
        }
        ConsoleEvent::Queue { city, .. } => oversees_city(ctx, user, city.as_deref()),
    }
}

#[utoipa::path(get, path = "/api/events", operation_id = "console_events", tag = "queues",
    summary = "Server-sent events of the cities in the user's unit subtree (and of the user's own agent): agent_state, call_offered (screen-pops, only to the offered agent and the supervisors of its city), queue, lagged",
    responses((status = 200, description = "an event stream", content_type = "text/event-stream", body = String), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn events(
    axum::extract::State(state): axum::extract::State<AppState>,
    CurrentUser(user): CurrentUser,
    ext: Option<Extension<AcdApi>>,
) -> Result<Response, ApiError> {
    let acd = acd_of(ext)?;
    let rx = acd.subscribe();
    let seer = Arc::new((state.orders.clone(), user));
    let stream = futures_util::stream::unfold((rx, seer), |(mut rx, seer)| async move {
        let sse = loop {
            match rx.recv().await {
                Ok(event) if !sees(&seer.0, &seer.1, &event) => {}
                Ok(event) => {
                    break Event::default()
                        .event(event.name())
                        .json_data(&event)
                        .unwrap_or_else(|_| Event::default().comment("unserializable"));
                }
                // A slow console missed events: it refreshes from GET /api/queues.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    break Event::default().event("lagged").data(n.to_string());
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        };
        Some((Ok::<Event, Infallible>(sse), (rx, seer)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    /// Why the agent pauses (pause only; default "break").
    reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ChangeReply {
    agent: String,
    state: String,
}

/// Decode `POST /api/agents/{id}/{action}` as the handler does once the agent may act:
/// the body (optional, `{"reason"}`) and the action, into the ACD input.
///
/// # Errors
/// Not JSON or wrong fields → 400 `bad_json`; unknown action → 404.
pub fn decode_agent_change(agent: &str, action: &str, body: &[u8]) -> Result<QueueInput, ApiError> {
    change_input(AgentId::new(agent.to_owned()), action, change_body(body)?)
}

fn change_body(body: &[u8]) -> Result<ChangeBody, ApiError> {
    // The body is optional (`{"reason"}` for a pause): empty means no reason.
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(ChangeBody::default())
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request("bad_json", e.to_string()))
    }
}

fn change_input(agent: AgentId, action: &str, body: ChangeBody) -> Result<QueueInput, ApiError> {
    let reason = body.reason.unwrap_or_default();
    Ok(match action {
        "sign_in" => QueueInput::SignIn { agent },
        "sign_out" => QueueInput::SignOut { agent },
        "pause" => QueueInput::Pause {
            agent,
            reason: PauseReason::new(if reason.trim().is_empty() {
                "break".to_string()
            } else {
                reason.chars().take(100).collect()
            }),
        },
        "unpause" => QueueInput::Unpause { agent },
        "end_wrap_up" => QueueInput::EndWrapUp { agent },
        _ => return Err(ApiError::not_found("action")),
    })
}

#[utoipa::path(post, path = "/api/agents/{id}/{action}", operation_id = "change_agent_state", tag = "queues",
    summary = "Agent state: sign_in, sign_out, pause ({\"reason\"}), unpause, end_wrap_up; the agent's own user or a supervisor of the agent's city (403 else)",
    params(
        ("id" = String, Path, description = "the agent"),
        ("action" = String, Path, description = "sign_in | sign_out | pause | unpause | end_wrap_up"),
    ),
    request_body(content = Option<ChangeBody>, description = "optional; {\"reason\"} for a pause"),
    responses((status = 200, description = "the agent's new state", body = ChangeReply), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn change(
    axum::extract::State(state): axum::extract::State<AppState>,
    CurrentUser(user): CurrentUser,
    ext: Option<Extension<AcdApi>>,
    Path((id, action)): Path<(String, String)>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = change_body(&super::orders::body_bytes(body)?)?;
    let acd = acd_of(ext)?;
    let agent = AgentId::new(id);
    if !acd.knows_agent(agent.as_str()) {
        return Err(ApiError::not_found("agent"));
    }
    let city = acd.agent_city(&agent).map(|c| c.as_str().to_owned());
    let allowed = user.is_agent(agent.as_str())
        || (user.oversees_calls() && oversees_city(&state.orders, &user, city.as_deref()));
    if !allowed {
        return Err(ApiError::forbidden(
            "an agent may only change their own state, a supervisor those of their cities' agents",
        ));
    }
    let input = change_input(agent.clone(), &action, body)?;
    acd.input(input)
        .map_err(|e| ApiError::unprocessable("acd_refused", e.to_string()))?;
    let state = acd
        .agent_state(&agent)
        .map_or_else(|| "unknown".to_string(), |s| s.name().to_string());
    Ok((
        StatusCode::OK,
        Json(ChangeReply {
            agent: agent.0,
            state,
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Role as ConfigRole, UserConfig};

    /// The shipped units (province → jinan → jinan-shizhong county, qingdao).
    fn context() -> OrdersContext {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config =
            crate::config::Config::load(&root.join("config/hotline.toml")).expect("config");
        let calendar =
            crate::calendar::Calendar::load(root.join("config/calendar/cn-workdays.toml"))
                .expect("calendar");
        OrdersContext::from_config(&config, calendar)
    }

    fn user(id: &str, role: ConfigRole, unit: &str, agent: Option<&str>) -> User {
        let auth = super::super::auth::Auth::from_config(&[UserConfig {
            id: id.into(),
            name: id.into(),
            password: Some("x".into()),
            password_hash: None,
            roles: vec![role],
            unit: unit.into(),
            api_token: None,
            agent: agent.map(str::to_owned),
        }]);
        auth.user(id).cloned().expect("user")
    }

    #[test]
    fn screen_pops_reach_only_the_offered_agent_and_overseers_of_its_city() {
        let ctx = context();
        let pop = ConsoleEvent::CallOffered {
            call_id: "c1".into(),
            agent: "1001".into(),
            caller_masked: "138****5678".into(),
            city: Some("jinan".into()),
            category: "complaint".into(),
            urgency: "normal".into(),
            draft_order_id: None,
            previous_orders: vec![],
        };
        let sees = |u: &User| sees(&ctx, u, &pop);
        assert!(sees(&user(
            "zhang",
            ConfigRole::Agent,
            "jinan",
            Some("1001")
        )));
        assert!(sees(&user("1001", ConfigRole::Agent, "jinan", None)));
        assert!(!sees(&user("li", ConfigRole::Agent, "jinan", Some("1002"))));
        assert!(!sees(&user("1001x", ConfigRole::Dispatcher, "jinan", None)));
        assert!(sees(&user("zhou", ConfigRole::Supervisor, "jinan", None)));
        assert!(sees(&user(
            "prov",
            ConfigRole::ProvinceAdmin,
            "province",
            None
        )));
        // Another city's supervisor gets no screen-pop of Jinan's calls.
        assert!(!sees(&user("qd", ConfigRole::Supervisor, "qingdao", None)));
    }

    #[test]
    fn agent_and_queue_events_reach_the_users_of_their_city_subtree_only() {
        let ctx = context();
        let state = ConsoleEvent::AgentState {
            agent: "1001".into(),
            city: Some("jinan".into()),
            from: "available".into(),
            to: "on_call".into(),
            reason: String::new(),
            at: String::new(),
            call: Some("jinan-call".into()),
            until: None,
        };
        let queue = ConsoleEvent::Queue {
            city: Some("jinan".into()),
            call_id: Some("jinan-call".into()),
            event: "overflow:qingdao".into(),
        };
        for event in [&state, &queue] {
            let sees = |u: &User| sees(&ctx, u, event);
            assert!(sees(&user("li", ConfigRole::Agent, "jinan", Some("1002"))));
            assert!(sees(&user(
                "prov",
                ConfigRole::Dispatcher,
                "province",
                None
            )));
            assert!(!sees(&user("qd", ConfigRole::Supervisor, "qingdao", None)));
            assert!(!sees(&user(
                "qd-agent",
                ConfigRole::Agent,
                "qingdao",
                Some("2001")
            )));
            // A county's user is below the city: not the city's live calls.
            assert!(!sees(&user(
                "county",
                ConfigRole::UnitHandler,
                "jinan-shizhong",
                None
            )));
        }
        // An agent always hears of their own state, wherever their user sits.
        assert!(sees(
            &ctx,
            &user("a", ConfigRole::Agent, "jinan-shizhong", Some("1001")),
            &state
        ));
    }
}
