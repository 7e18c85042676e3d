//! A job's files — its output, inputs, stdout and stderr — read through the trustless gateways
//! of [`GatewayConfig::content_gateways`], every block verified against its CID. A directory
//! answers a JSON listing, a file its bytes.
//!
//! What a program wrote is untrusted, and the dashboard keeps its API key on the gateway's
//! origin: a file is served so that it can never run there as script or page — a content type
//! from a short allow-list (images, plain text, JSON; anything else a download), `nosniff`, and
//! `Content-Security-Policy: sandbox` — and one request streams at most
//! [`GatewayConfig::max_file_bytes`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cid::Cid;
use futures::TryStreamExt;
use serde::Serialize;
use shoal_content::source::{HttpGatewaySource, SourceChain};
use shoal_content::unixfs::{self, NodeKind};
use shoal_content::{BlockReader, BlockSource, ContentError};
use shoal_jobs::{Job, JobState, Principal};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, ResponsesBuilder};
use utoipa::{IntoParams, IntoResponses, PartialSchema, ToSchema};

use crate::api_error::{ApiError, Envelope};
use crate::jobs::{load_job, InvalidJobId, JobId};
use crate::{AppState, GatewayConfig, GatewayError};

/// Time one content source gets for one block: well within the request timeout, so a source
/// that hangs is reported as unavailable rather than as a timed-out request.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one block lookup may take over all sources.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(15);

/// Files of another origin may not be embedded from here, nor these embedded elsewhere.
const CROSS_ORIGIN_RESOURCE_POLICY: HeaderName = HeaderName::from_static("cross-origin-resource-policy");

/// Where a gateway reads content from, and how much of it one request may stream.
#[derive(Clone)]
pub(crate) struct Content {
    /// `None` when no source is configured.
    reader: Option<Arc<dyn BlockReader>>,
    max_file_bytes: u64,
}

impl Content {
    /// The sources of [`GatewayConfig::content_gateways`]; a URL that does not parse stops the
    /// gateway from starting.
    pub(crate) fn new(config: &GatewayConfig) -> Result<Content, GatewayError> {
        let sources = config
            .content_gateways
            .iter()
            .map(|url| {
                HttpGatewaySource::new(url)
                    .map(|source| Arc::new(source) as Arc<dyn BlockSource>)
                    .map_err(|e| GatewayError::InvalidConfig(format!("content gateway: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let reader = (!sources.is_empty()).then(|| {
            Arc::new(SourceChain::new(sources).with_source_timeout(SOURCE_TIMEOUT).with_deadline(LOOKUP_DEADLINE))
                as Arc<dyn BlockReader>
        });
        Ok(Content { reader, max_file_bytes: config.max_file_bytes })
    }

    /// Why `cid` is not a WebAssembly module, if this gateway can tell: it is a directory, not
    /// UnixFS, or a file that does not start with wasm's magic. `None` when it is a module, or
    /// when the gateway cannot look (no sources, or none has the content yet: it may still be on
    /// its way, and whoever runs it reports it then).
    pub(crate) async fn not_a_module(&self, cid: &Cid) -> Option<String> {
        /// How long a submission waits to look: the answer is a courtesy, not a guarantee.
        const LOOK: Duration = Duration::from_secs(2);
        const WASM_MAGIC: &[u8] = b"\0asm";
        let reader = self.reader.clone()?;
        let look = async {
            let info = match unixfs::stat(reader.as_ref(), cid).await {
                Ok(info) => info,
                Err(ContentError::NotFound { .. } | ContentError::Unavailable { .. }) => return None,
                Err(e) => return Some(e.to_string()),
            };
            if info.kind != NodeKind::File {
                return Some(format!("it is a UnixFS {}, not a file", info.kind.name()));
            }
            let head: Vec<u8> = match unixfs::cat_range(reader, *cid, 0..4).try_collect::<Vec<_>>().await {
                Ok(chunks) => chunks.concat(),
                Err(_) => return None,
            };
            (head != WASM_MAGIC)
                .then(|| format!("it does not start with wasm's magic `\\0asm` (it starts {head:02x?})"))
        };
        tokio::time::timeout(LOOK, look).await.ok().flatten()
    }

    fn reader(&self) -> Result<&Arc<dyn BlockReader>, ApiError> {
        self.reader.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "content_not_configured",
                "this gateway reads no content: start it with --content-from <trustless gateway URL> (shoal dev does)",
            )
        })
    }
}

/// Which of a job's trees a request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    Output,
    Input(usize),
    Stdout,
    Stderr,
}

impl Tree {
    fn name(self) -> String {
        match self {
            Tree::Output => "output".into(),
            Tree::Input(index) => format!("inputs/{index}"),
            Tree::Stdout => "stdout".into(),
            Tree::Stderr => "stderr".into(),
        }
    }
}

/// The `If-None-Match` header every file route takes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(dead_code, reason = "documentation only: `serve` reads the header from the request's headers")]
struct IfNoneMatch {
    /// An `ETag` this gateway answered: 304 if it still names the content.
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
}

/// The `{index}` of the routes below `/v1/jobs/{id}/files/inputs/{index}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "documentation only: the handlers parse the index themselves, to name it in a 400")]
struct InputIndex {
    /// The input's place in the spec's `inputs`, from 0.
    index: u32,
}

/// The `{path}` of the routes that read below a tree's root.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "documentation only: the handlers take the path as `Path<…>`")]
struct FilePath {
    /// A path below the tree's root; its `/`s are sent as they are.
    #[param(example = "masks/cloud.png")]
    path: String,
}

/// What every file route may answer besides its 200 and the 400 and 404 that name what its
/// path can get wrong. Each variant's doc comment is its description in the document.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "documentation only: `serve` builds these answers itself")]
enum ContentAnswers {
    /// Not modified: `If-None-Match` names the `ETag`.
    #[response(status = 304)]
    NotModified,
    /// `content_not_configured`: this gateway has no content sources.
    #[response(status = 501)]
    NotConfigured(Envelope<'static>),
    /// `bad_content`: the content cannot be read.
    #[response(status = 502)]
    BadContent(Envelope<'static>),
    /// `content_unavailable` (the content sources cannot deliver it now), `redis_unavailable`.
    #[response(status = 503)]
    Unavailable(Envelope<'static>),
}

/// What the routes into what a job wrote (its output, stdout, stderr) answer before it wrote it;
/// a job's inputs are there from the start.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "documentation only: `serve` answers errors as `ApiError`")]
enum Unwritten {
    /// `not_finished` (with `state`): the job has not recorded it yet.
    #[response(status = 409)]
    NotFinished(Envelope<'static>),
}

/// What a route that serves a file's bytes answers for one over the limit.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "documentation only: `serve` answers errors as `ApiError`")]
enum TooLarge {
    /// `file_too_large`: over the gateway's limit for one request.
    #[response(status = 413)]
    TooLarge(Envelope<'static>),
}

/// What a route that takes a path answers when it names a symbolic link.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "documentation only: `serve` answers errors as `ApiError`")]
enum NotAFile {
    /// `not_a_file` (field `path`): a symbolic link, which is not followed.
    #[response(status = 422)]
    NotAFile(Envelope<'static>),
}

/// The 200 of `GET /v1/jobs/{id}/files/output`: the output directory's listing.
struct ListingServed;

impl IntoResponses for ListingServed {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        served(
            "The output directory's listing.",
            [("application/json", Some(Ref::from_schema_name(Listing::name()).into()))],
        )
    }
}

/// The 200 of the routes that serve whatever their path names: as [`serve`] answers it.
struct FileServed;

impl IntoResponses for FileServed {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        served(
            "A directory: its listing (`DirectoryListing`). A file: its bytes, typed by its extension from an \
             allow-list (anything else as a download, with `Content-Disposition: attachment`).",
            [
                ("application/json", Some(serde_json::Value::schema())),
                (TEXT, Some(String::schema())),
                ("image/png", None),
                ("image/jpeg", None),
                ("image/gif", None),
                ("image/webp", None),
                ("application/octet-stream", None),
            ],
        )
    }
}

/// The 200 of a job's stdout and stderr.
struct TextServed;

impl IntoResponses for TextServed {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        served("The text.", [(TEXT, Some(String::schema()))])
    }
}

/// A 200 with `description` and these media types (each with its schema, if it has one), and
/// the headers of every answer with a job's content that a client may act on — built here
/// once, as the `#[utoipa::path]` syntax cannot share headers between responses.
fn served<const N: usize>(
    description: &str,
    media_types: [(&str, Option<RefOr<Schema>>); N],
) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let header = |description: &str| {
        HeaderBuilder::new().schema(Object::with_type(Type::String)).description(Some(description)).build()
    };
    let mut response = ResponseBuilder::new()
        .description(description)
        .header("ETag", header("The CID, quoted."))
        .header("Content-Security-Policy", header("`sandbox; default-src 'none'`: nothing served runs here."));
    for (media_type, schema) in media_types {
        response = response.content(media_type, ContentBuilder::new().schema(schema).build());
    }
    ResponsesBuilder::new().response("200", response).build().into()
}

/// `GET /v1/jobs/{id}/files/output`: the listing of the job's output directory.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/files/output",
    operation_id = "listJobOutput",
    tag = "files",
    security(("api_key" = [])),
    params(JobId, IfNoneMatch),
    responses(
        ListingServed,
        InvalidJobId,
        (status = 404, description = "`job_not_found`, `no_output` for a job that ended without one.", body = Envelope),
        Unwritten, ContentAnswers,
    )
)]
pub(crate) async fn output(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&app, &principal, &id, Tree::Output, "", &headers).await
}

/// `GET /v1/jobs/{id}/files/output/{*path}`: a file (its bytes) or directory (its listing) in
/// the job's output.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/files/output/{path}",
    operation_id = "getJobOutputFile",
    tag = "files",
    security(("api_key" = [])),
    params(JobId, FilePath, IfNoneMatch),
    responses(
        FileServed,
        (status = 400, description = "`invalid_job_id` (field `id`), `invalid_path` (field `path`: a `.` or `..` \
                                      segment).",
            body = Envelope),
        (status = 404, description = "`job_not_found`, `no_output` for a job that ended without one, `path_not_found` \
                                      (field `path`).",
            body = Envelope),
        TooLarge, NotAFile,
        Unwritten, ContentAnswers,
    )
)]
pub(crate) async fn output_path(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&app, &principal, &id, Tree::Output, &path, &headers).await
}

/// `GET /v1/jobs/{id}/files/inputs/{index}`: the job's input `index` (counted from 0, in the
/// order of the spec's `inputs`).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/files/inputs/{index}",
    operation_id = "getJobInput",
    tag = "files",
    security(("api_key" = [])),
    params(JobId, InputIndex, IfNoneMatch),
    responses(
        FileServed,
        (status = 400, description = "`invalid_job_id` (field `id`), `invalid_parameter` (field `index`).",
            body = Envelope),
        (status = 404, description = "`job_not_found`, `input_not_found` (field `index`).", body = Envelope),
        TooLarge, NotAFile,
        ContentAnswers,
    )
)]
pub(crate) async fn input(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, index)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&app, &principal, &id, Tree::Input(input_index(&index)?), "", &headers).await
}

/// `GET /v1/jobs/{id}/files/inputs/{index}/{*path}`: a file or directory in the job's input
/// `index`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/files/inputs/{index}/{path}",
    operation_id = "getJobInputFile",
    tag = "files",
    security(("api_key" = [])),
    params(JobId, InputIndex, FilePath, IfNoneMatch),
    responses(
        FileServed,
        (status = 400, description = "`invalid_job_id` (field `id`), `invalid_parameter` (field `index`), \
                                      `invalid_path` (field `path`: a `.` or `..` segment).",
            body = Envelope),
        (status = 404, description = "`job_not_found`, `input_not_found` (field `index`), `path_not_found` (field \
                                      `path`).",
            body = Envelope),
        TooLarge, NotAFile,
        ContentAnswers,
    )
)]
pub(crate) async fn input_path(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, index, path)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&app, &principal, &id, Tree::Input(input_index(&index)?), &path, &headers).await
}

/// `GET /v1/jobs/{id}/files/stdout`: what the job's program wrote to standard output.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/files/stdout",
    operation_id = "getJobStdout",
    tag = "files",
    security(("api_key" = [])),
    params(JobId, IfNoneMatch),
    responses(
        TextServed,
        InvalidJobId,
        (status = 404, description = "`job_not_found`, `no_output` for a job that ended without one.", body = Envelope),
        TooLarge, Unwritten, ContentAnswers,
    )
)]
pub(crate) async fn stdout(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&app, &principal, &id, Tree::Stdout, "", &headers).await
}

/// `GET /v1/jobs/{id}/files/stderr`: what the job's program wrote to standard error (also for
/// a program that exited non-zero).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/files/stderr",
    operation_id = "getJobStderr",
    tag = "files",
    security(("api_key" = [])),
    params(JobId, IfNoneMatch),
    responses(
        TextServed,
        InvalidJobId,
        (status = 404, description = "`job_not_found`, `no_output` for a job that ended without one.", body = Envelope),
        TooLarge, Unwritten, ContentAnswers,
    )
)]
pub(crate) async fn stderr(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&app, &principal, &id, Tree::Stderr, "", &headers).await
}

fn input_index(raw: &str) -> Result<usize, ApiError> {
    raw.parse().map_err(|_| ApiError::invalid_parameter("index", format!("{raw:?} is not an input index (0, 1, …)")))
}

/// The root CID of `tree` in `job`, and a name for it (what a file without a path is called).
fn root_of(job: &Job, tree: Tree) -> Result<(Cid, String), ApiError> {
    if let Tree::Input(index) = tree {
        let input = job.spec.inputs.get(index).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "input_not_found",
                format!("job {} has {} inputs; there is no input {index}", job.id, job.spec.inputs.len()),
            )
            .with_field("index")
        })?;
        let name = input.name.clone().unwrap_or_else(|| last_segment(&input.path).to_string());
        return Ok((*input.cid.cid(), name));
    }
    let failure_stderr = job.failure.as_ref().and_then(|failure| failure.stderr);
    let cid = match (tree, &job.result) {
        (Tree::Output, Some(result)) => Some(result.output),
        (Tree::Stdout, Some(result)) => Some(result.stdout),
        (Tree::Stderr, Some(result)) => Some(result.stderr),
        (Tree::Stderr, None) => failure_stderr,
        _ => None,
    };
    match cid {
        Some(cid) => Ok((*cid.cid(), tree.name())),
        None if matches!(job.state, JobState::Queued | JobState::Running) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_finished",
            format!("job {} is {}; it has no {} yet", job.id, job.state, tree.name()),
        )
        .with_state(job.state)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_output",
            format!("job {} {} without recording a {}", job.id, job.state, tree.name()),
        )
        .with_state(job.state)),
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// One entry of a directory listing.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DirectoryEntry)]
struct Entry {
    name: String,
    cid: String,
    /// `file`, `directory` or `symlink`.
    kind: &'static str,
    /// A file's bytes (0 for a directory).
    size: u64,
}

/// The answer for a directory.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DirectoryListing)]
pub(crate) struct Listing {
    job: String,
    /// `output`, `inputs/0`, …
    tree: String,
    /// The directory's path below the tree's root, `""` for the root.
    path: String,
    cid: String,
    kind: &'static str,
    entries: Vec<Entry>,
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::File => "file",
        NodeKind::Directory | NodeKind::HamtDirectory => "directory",
        NodeKind::Symlink => "symlink",
    }
}

async fn serve(
    app: &AppState,
    principal: &Principal,
    id: &str,
    tree: Tree,
    path: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if path.split('/').any(|segment| segment == "." || segment == "..") {
        let message = format!("{path:?} has a `.` or `..` segment; paths go down from the tree's root only");
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", message).with_field("path"));
    }
    let job = load_job(app, principal, id).await?;
    let (root, root_name) = root_of(&job, tree)?;
    let reader = app.content.reader()?;
    let cid = unixfs::resolve_path(reader.as_ref(), &root, path).await.map_err(content_error)?;
    let info = unixfs::stat(reader.as_ref(), &cid).await.map_err(content_error)?;
    let etag = HeaderValue::try_from(format!("\"{cid}\"")).expect("a CID is a valid header value");
    if headers.get(IF_NONE_MATCH).is_some_and(|tags| matches(tags, &etag)) {
        return Ok(with_file_headers((StatusCode::NOT_MODIFIED, [(ETAG, etag)]).into_response()));
    }
    let mut response = match info.kind {
        NodeKind::Directory | NodeKind::HamtDirectory => {
            let entries = unixfs::list(reader.as_ref(), &cid).await.map_err(content_error)?;
            let entries = entries
                .into_iter()
                .map(|e| Entry { name: e.name, cid: e.cid.to_string(), kind: kind_name(e.kind), size: e.size })
                .collect();
            let path = path.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/");
            let listing =
                Listing { job: job.id, tree: tree.name(), path, cid: cid.to_string(), kind: "directory", entries };
            Json(listing).into_response()
        }
        NodeKind::File => {
            if info.size > app.content.max_file_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "file_too_large",
                    format!(
                        "{cid} is {} bytes, over this gateway's limit of {} for one request; fetch it with `shoal get {cid}`",
                        info.size, app.content.max_file_bytes
                    ),
                ));
            }
            let name = if path.is_empty() { root_name } else { last_segment(path).to_string() };
            let body = Body::from_stream(unixfs::cat(reader.clone(), cid));
            let mut response = body.into_response();
            let headers = response.headers_mut();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(info.size));
            match (tree, media_type(&name)) {
                (Tree::Stdout | Tree::Stderr, _) => {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
                }
                (_, Some(media_type)) => {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
                }
                (_, None) => {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                    headers.insert(CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
                }
            }
            response
        }
        NodeKind::Symlink => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_a_file",
                format!("{cid} is a symbolic link; links are not followed"),
            )
            .with_field("path"))
        }
    };
    response.headers_mut().insert(ETAG, etag);
    Ok(with_file_headers(response))
}

/// Whether an `If-None-Match` value names `etag` (or is `*`).
fn matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(tags) = if_none_match.to_str() else { return false };
    let wanted = etag.to_str().unwrap_or_default();
    tags.split(',').map(|tag| tag.trim().trim_start_matches("W/")).any(|tag| tag == "*" || tag == wanted)
}

/// Headers of every answer with a job's content: never sniffed, never run as a page or script
/// of this origin, not embedded by other origins, cached only by the client and revalidated (a
/// verifier's correction may change what a job's path names).
fn with_file_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    headers.insert(CROSS_ORIGIN_RESOURCE_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    response
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The content type a file named `name` is served with, from its extension: only types a
/// browser shows without running anything. `None`: served as a download.
fn media_type(name: &str) -> Option<&'static str> {
    let (_, extension) = name.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "txt" | "log" | "csv" | "tsv" | "md" => TEXT,
        "json" => "application/json",
        _ => return None,
    })
}

/// The answer for content that could not be read.
fn content_error(error: ContentError) -> ApiError {
    match error {
        ContentError::PathNotFound { .. } | ContentError::WrongKind { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "path_not_found", error.to_string()).with_field("path")
        }
        ContentError::InvalidArgument { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", error.to_string()).with_field("path")
        }
        ContentError::NotFound { .. }
        | ContentError::Unavailable { .. }
        | ContentError::Source { .. }
        | ContentError::Io { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "content_unavailable",
            format!("the content sources cannot deliver this now, retry later: {error}"),
        ),
        _ => ApiError::new(StatusCode::BAD_GATEWAY, "bad_content", format!("the content cannot be read: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inert_types_are_served_as_themselves() {
        assert_eq!(media_type("mask.png"), Some("image/png"));
        assert_eq!(media_type("PHOTO.JPG"), Some("image/jpeg"));
        assert_eq!(media_type("stats.json"), Some("application/json"));
        assert_eq!(media_type("run.log"), Some(TEXT));
        for name in ["page.html", "page.htm", "drawing.svg", "app.js", "x.xhtml", "scene.TIF", "noext"] {
            assert_eq!(media_type(name), None, "{name} is a download");
        }
    }

    #[test]
    fn if_none_match_names_the_etag_among_others() {
        let etag = HeaderValue::from_static("\"bafy\"");
        assert!(matches(&HeaderValue::from_static("\"bafy\""), &etag));
        assert!(matches(&HeaderValue::from_static("\"x\", W/\"bafy\""), &etag));
        assert!(matches(&HeaderValue::from_static("*"), &etag));
        assert!(!matches(&HeaderValue::from_static("\"bafyx\""), &etag));
    }
}
