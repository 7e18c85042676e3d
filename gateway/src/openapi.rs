//! The API's OpenAPI 3.1 document, served at `GET /openapi.json`: generated from the handlers'
//! `#[utoipa::path]` annotations and the request and response types themselves, so it says what
//! the code does. `tests/tests/all/openapi.rs` checks it with an independent validator and
//! checks real answers of every endpoint against it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use shoal_jobs::Member;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// The name of the security scheme, an API key as a bearer token, as the handlers' `security`
/// attributes spell it.
const API_KEY: &str = "api_key";

/// The document's routes and schemas; [`Shared`] adds what every route has in common.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shoal",
        description = "Runs WebAssembly jobs over IPFS content. Every error is `{\"error\": {\"code\", \"message\", \
                       \"field\"?}}` (the `Error` schema); `code` is stable, `field` names the request field at fault.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0")
    ),
    paths(
        crate::jobs::submit,
        crate::jobs::list,
        crate::jobs::status,
        crate::jobs::cancel,
        crate::jobs::result,
        crate::events::job_events,
        crate::events::all_events,
        crate::pipelines::create,
        crate::pipelines::status,
        crate::pipelines::cancel,
        crate::files::output,
        crate::files::output_path,
        crate::files::input,
        crate::files::input_path,
        crate::files::stdout,
        crate::files::stderr,
        crate::workers,
        crate::metrics::scrape,
        crate::health,
        document,
        crate::ui::index,
        crate::ui::asset,
    ),
    // Schemas that only hand-built responses name, which the generator does not collect itself.
    components(schemas(crate::files::Listing, shoal_jobs::Change)),
    modifiers(&Shared),
    tags(
        (name = "jobs", description = "Submit, follow, cancel and list jobs; read their results."),
        (name = "pipelines", description = "Create, follow and cancel pipelines: stages run as jobs by the \
                                             workers' driver."),
        (name = "files", description = "A job's output, inputs and logs, read through the gateway's content \
                                         sources with every block verified."),
        (name = "operators", description = "Only for operators' keys."),
        (name = "service", description = "Health and this document; no key needed."),
        (name = "dashboard", description = "The dashboard's static files; no key needed (the page asks for one)."),
    )
)]
struct ApiDoc;

/// The document as served, serialised once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().expect("the OpenAPI document always serialises"));

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object))
)]
pub(crate) async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

/// Documents `/ui/` as `/ui`, and adds the bearer scheme and the answers any route may give:
/// 500, 503 and 504 everywhere (the middleware's panic catcher, Redis or the connection limit,
/// the request timeout), 401 on every route that needs a key — added here once rather than on
/// each handler, so a new route cannot miss them.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // `/ui/` answers as `/ui` does: one handler, so one annotation.
        if let Some(mut page) = openapi.paths.paths.get("/ui").cloned() {
            if let Some(get) = page.get.as_mut() {
                get.operation_id = Some("dashboardSlash".into());
            }
            openapi.paths.paths.insert("/ui/".into(), page);
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("shoal_…")
            .description(Some("An API key made with `shoal keys create`, as `Authorization: Bearer shoal_…`."))
            .build();
        components.add_security_scheme(API_KEY, SecurityScheme::Http(bearer));
        // Status, name under `components/responses`, description, whether `Retry-After` comes with it.
        let shared = [
            (
                "401",
                "Unauthorized",
                "`unauthenticated` (no `Authorization: Bearer` key) or `invalid_api_key` (unknown or revoked); \
                 with `WWW-Authenticate: Bearer realm=\"shoal\"`.",
                false,
            ),
            (
                "500",
                "Internal",
                "`internal` (the gateway failed) or `corrupt_record` (a stored record is unreadable).",
                false,
            ),
            (
                "503",
                "Unavailable",
                "`redis_unavailable` (retry later), or `too_many_connections` (with `Retry-After`) when the gateway \
                 is at its connection limit.",
                true,
            ),
            (
                "504",
                "Timeout",
                "`timeout`: the request did not complete in time; retry it (with the same `Idempotency-Key` for a \
                 submission).",
                false,
            ),
        ];
        for (_, name, description, retry_after) in shared {
            components.responses.insert(name.to_string(), error_response(description, retry_after));
        }
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let keyed = operation.security.as_ref().is_some_and(|requirements| !requirements.is_empty());
                for (status, name, _, _) in shared {
                    if status == "401" && !keyed {
                        continue;
                    }
                    // A route's own answer for the status (its 503 `redis_unavailable`) stays.
                    let reference = RefOr::Ref(Ref::new(format!("#/components/responses/{name}")));
                    operation.responses.responses.entry(status.to_string()).or_insert(reference);
                }
            }
        }
    }
}

/// An error answer with `description`, its body the `Error` schema, with a `Retry-After`
/// header if `retry_after`.
fn error_response(description: &str, retry_after: bool) -> RefOr<Response> {
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build());
    if retry_after {
        let header = HeaderBuilder::new()
            .schema(Object::with_type(Type::Integer))
            .description(Some("Seconds to wait before trying again."))
            .build();
        response = response.header("Retry-After", header);
    }
    RefOr::T(response.build())
}

// The handler builds this answer with `serde_json::json!` (its keys sorted, as a typed answer's
// would not be): these types describe it, and the OpenAPI test holds real answers to them.
/// The answer of `GET /v1/workers`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema only: the handler builds the JSON it describes")]
pub(crate) struct Workers {
    /// Shard → the workers picked to read it besides its owners, best first.
    hot_shards: BTreeMap<String, Vec<String>>,
    /// How recently a worker must have been heard from to be listed, in ms.
    live_within_ms: u64,
    /// Every shard, in order: its owner and backlog.
    shards: Vec<ShardState>,
    /// The live workers, most recently heard from first.
    workers: Vec<Member>,
}

/// One shard in `GET /v1/workers`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema only: the handler builds the JSON it describes")]
pub(crate) struct ShardState {
    /// The workers picked to read it besides its owner, best first.
    extra_readers: Vec<String>,
    /// Its best-ranked live worker, `null` when none is live.
    owner: Option<String>,
    /// Entries read by a worker and not yet acknowledged.
    pending: u64,
    /// The shard's number, from 0.
    shard: u32,
    /// Entries no worker has read yet.
    unread: u64,
}

/// The answer of `GET /healthz`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema only: the handler builds the JSON it describes")]
pub(crate) struct Health {
    /// `ok`.
    #[schema(examples("ok"))]
    status: String,
}

/// The example job spec: cloud detection over the README's Landsat scene.
pub(crate) fn example_spec() -> Value {
    json!({
        "program": CLOUD_DETECT,
        "inputs": [{"cid": SCENE, "path": "/inputs"}],
        "limits": {"fuel": 500_000_000_000_u64, "memory_bytes": 1_073_741_824},
        "verification": {"mode": "always"}
    })
}

/// The example job: [`example_spec`] as a `shoal dev` stack answered it, just queued.
pub(crate) fn example_job() -> Value {
    json!({
        "id": "01M9606Q1B83NV4CFWBSF1GZJG",
        "invocation": "bagaaieravn2pof4cveirtal5dmu4fvj4gllcjbhrrf2h2k7jjzk4fdn4pqea",
        "spec": {
            "program": CLOUD_DETECT,
            "entrypoint": "_start",
            "args": [],
            "env": {},
            "inputs": [{"cid": SCENE, "path": "/inputs"}],
            "limits": {
                "fuel": 500_000_000_000_u64,
                "memory_bytes": 1_073_741_824,
                "wall_time_ms": 300_000,
                "output_bytes": 268_435_456,
                "log_bytes": 1_048_576
            },
            "verification": {"mode": "always"},
            "retry": {"max_attempts": 3, "total_timeout_ms": 3_600_000, "backoff_ms": 1000}
        },
        "tenant": "local",
        "state": "queued",
        "created_at_ms": 1_796_571_618_347_u64,
        "updated_at_ms": 1_796_571_618_347_u64,
        "shard": 116,
        "executions": []
    })
}

/// The example job's result, once the verifier agreed.
pub(crate) fn example_result() -> Value {
    json!({
        "job": "01M9606Q1B83NV4CFWBSF1GZJG",
        "state": "succeeded",
        "acceptance": "verified",
        "accepted": true,
        "output": "bafybeia4uhm76tei7uied2727tyy73ecllvnpwtyjzuiy6zuppueykquxa",
        "stdout": "bafkreifzvfml2ujslefpfrzxnuepvaxvyimte7pfqcdktiejp5uphp5cfm",
        "stderr": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        "exit_code": 0,
        "fuel_consumed": 3_187_855_191_u64
    })
}

/// `programs/wasm/cloud-detect.wasm`, as `shoal add` names it.
const CLOUD_DETECT: &str = "bafybeiftif2ncpyug4t5by6wfapozrralajk6jnjqrqtuikt7chgi6afay";
/// `data/landsat/LC80200392015216LGN00`, as `shoal add` names it.
const SCENE: &str = "bafybeigprqr2mhzycbjib2vaswxdiqtkhbwvowph2gs4kir4uccoumkl2u";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_that_needs_a_key_says_so_and_answers_401() {
        let document: Value = serde_json::from_str(&DOCUMENT).unwrap();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let keyed = operation.get("security").is_some();
                let public = ["/healthz", "/openapi.json"].contains(&path.as_str()) || path.starts_with("/ui");
                assert_eq!(keyed, !public, "{method} {path}");
                assert_eq!(operation["responses"].get("401").is_some(), keyed, "{method} {path}");
            }
        }
    }

    /// Descriptions come from doc comments; a rustdoc link there means nothing to API users.
    #[test]
    fn descriptions_hold_no_rustdoc_links() {
        let links: Vec<String> =
            DOCUMENT.match_indices("[`").map(|(at, _)| DOCUMENT[at..].chars().take(60).collect()).collect();
        assert!(links.is_empty(), "rustdoc links in the document: {links:#?}");
    }
}
