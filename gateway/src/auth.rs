//! Who a request comes from (its API key) and what that tenant may still ask for (its quotas).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use moka::future::Cache;
use shoal_jobs::{ApiKeys, JobSpec, JobStore, PipelineSpec, Principal, Quotas, Role, StoreError, Tenant};

use crate::api_error::ApiError;
use crate::metrics::Phase;
use crate::AppState;

/// How long a key's record and a tenant's quotas are trusted before they are read again: a
/// revoked key stops working, and a changed quota applies, within this.
const RECORD_TTL: Duration = Duration::from_secs(5);

/// Keys whose records are kept: far more than a deployment's clients.
const CACHED_KEYS: u64 = 100_000;

/// The API keys and quotas as the gateway sees them, with what it read recently.
#[derive(Clone)]
pub(crate) struct Access {
    keys: ApiKeys,
    store: JobStore,
    /// A key's digest → its principal, or `None` for a key Redis does not know (so a flood of
    /// bad keys costs Redis nothing after the first). Keyed by the digest, so an entry's size is
    /// fixed whatever a client sends.
    principals: Cache<String, Option<Principal>>,
    quotas: Cache<Tenant, Quotas>,
    /// Each tenant's jobs queued or running, as last counted.
    outstanding: Cache<Tenant, u64>,
}

impl Access {
    /// Access over `keys` and the jobs of `store`; outstanding jobs are counted again after
    /// `count_every`.
    pub(crate) fn new(keys: ApiKeys, store: JobStore, count_every: Duration) -> Access {
        Access {
            keys,
            store,
            principals: Cache::builder().max_capacity(CACHED_KEYS).time_to_live(RECORD_TTL).build(),
            quotas: Cache::builder().max_capacity(CACHED_KEYS).time_to_live(RECORD_TTL).build(),
            outstanding: Cache::builder().max_capacity(CACHED_KEYS).time_to_live(count_every).build(),
        }
    }

    async fn principal(&self, secret: &str) -> Result<Option<Principal>, ApiError> {
        // Not shaped like a key: refused without a lookup or a cache entry.
        let Some(digest) = ApiKeys::digest_of(secret) else { return Ok(None) };
        let keys = self.keys.clone();
        let owned = digest.clone();
        self.principals
            .try_get_with(digest, async move { keys.principal_by_digest(&owned).await })
            .await
            .map_err(|e| ApiError::from(e.as_ref()))
    }

    async fn quotas(&self, tenant: &Tenant) -> Result<Quotas, ApiError> {
        let keys = self.keys.clone();
        let owned = tenant.clone();
        self.quotas
            .try_get_with(tenant.clone(), async move { keys.quotas(&owned).await })
            .await
            .map_err(|e| ApiError::from(e.as_ref()))
    }

    /// Refuses `spec` from `tenant` if it is over one of the tenant's quotas it can be held to
    /// before it is stored: fuel per job (403) and jobs outstanding (429 with `Retry-After`). The
    /// outstanding count is at most one counting interval old, so a burst can pass it by what
    /// arrives within one. Admitted, it answers the tenant's submissions a second, if it has
    /// such a quota: the job store counts the submission against them as it stores the job
    /// ([`shoal_jobs::JobStore::submit_client`]), on one Redis node in the same round trip.
    pub(crate) async fn admit(&self, tenant: &Tenant, spec: &JobSpec) -> Result<Option<u64>, Response> {
        let quotas = self.quotas(tenant).await.map_err(IntoResponse::into_response)?;
        let asking = [("the job".to_string(), "limits.fuel".to_string(), spec.limits.fuel)];
        self.check_fuel(tenant, &quotas, asking).map_err(IntoResponse::into_response)?;
        self.check_outstanding(tenant, &quotas).await?;
        Ok(quotas.submissions_per_sec)
    }

    /// Refuses pipeline `spec` from `tenant` as [`Access::admit`] refuses a job: each stage's
    /// jobs are held to the fuel quota, and the pipeline counts as one submission, counted here.
    pub(crate) async fn admit_pipeline(&self, tenant: &Tenant, spec: &PipelineSpec) -> Result<(), Response> {
        let quotas = self.quotas(tenant).await.map_err(IntoResponse::into_response)?;
        let asking = spec.stages().iter().map(|stage| {
            (format!("stage {}", stage.name), format!("stages.{}.limits.fuel", stage.name), stage.limits.fuel)
        });
        self.check_fuel(tenant, &quotas, asking).map_err(IntoResponse::into_response)?;
        // The submission's count and the outstanding jobs (read again once its count is too
        // old) are independent: asked for together, a submission that needs both waits one round
        // trip to Redis, not two. The count is made whatever the outstanding jobs.
        let made = async {
            match quotas.submissions_per_sec {
                Some(_) => self.keys.count_submission(tenant).await.map(Some),
                None => Ok(None),
            }
        };
        let (made, outstanding) = tokio::join!(made, self.check_outstanding(tenant, &quotas));
        let made = made.map_err(|e| ApiError::from(e).into_response())?;
        if let (Some(max), Some(made)) = (quotas.submissions_per_sec, made) {
            if made > max {
                let refused = StoreError::RateLimited { tenant: tenant.to_string(), per_sec: max };
                return Err(too_many(ApiError::from(refused)));
            }
        }
        outstanding
    }

    /// Refuses (403) a submission whose jobs ask for fuel as `asking` says (who asks, the field
    /// that asks, how much) past the tenant's fuel quota.
    fn check_fuel(
        &self,
        tenant: &Tenant,
        quotas: &Quotas,
        asking: impl IntoIterator<Item = (String, String, u64)>,
    ) -> Result<(), ApiError> {
        let Some(max) = quotas.max_fuel else { return Ok(()) };
        match asking.into_iter().find(|&(_, _, fuel)| fuel > max) {
            Some((who, field, fuel)) => {
                let message = format!("{who} asks for {fuel} fuel; tenant {tenant} may ask for {max} at most");
                Err(ApiError::new(StatusCode::FORBIDDEN, "quota_exceeded", message).with_field(field))
            }
            None => Ok(()),
        }
    }

    /// Refuses (429) a submission of a tenant with as many jobs queued or running as its quota.
    async fn check_outstanding(&self, tenant: &Tenant, quotas: &Quotas) -> Result<(), Response> {
        let Some(max) = quotas.max_outstanding else { return Ok(()) };
        let store = self.store.clone();
        let owned = tenant.clone();
        let outstanding = self
            .outstanding
            .try_get_with(tenant.clone(), async move { store.outstanding(&owned).await })
            .await
            .map_err(|e| ApiError::from(e.as_ref()).into_response())?;
        if outstanding >= max {
            let message = format!(
                "tenant {tenant} has {outstanding} jobs queued or running, its limit is {max}: submit again once some finished"
            );
            return Err(too_many(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_outstanding", message)));
        }
        Ok(())
    }
}

/// `refused` (a 429) with `Retry-After: 1`.
pub(crate) fn too_many(refused: ApiError) -> Response {
    let mut refused = refused.into_response();
    refused.headers_mut().insert(RETRY_AFTER, HeaderValue::from(1));
    refused
}

/// Middleware: the request's `Authorization: Bearer <key>` must name a live key; its
/// [`Principal`] goes into the request's extensions for the handlers. 401 otherwise.
pub(crate) async fn authenticate(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get(AUTHORIZATION).map(|value| value.to_str().unwrap_or(""));
    let Some(header) = header else {
        return unauthenticated("unauthenticated", "send an API key as Authorization: Bearer <key>");
    };
    let secret = match header.split_once(' ') {
        Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") => secret.trim(),
        _ => return unauthenticated("unauthenticated", "the Authorization header must be Bearer <key>"),
    };
    let started = std::time::Instant::now();
    let principal = app.access.principal(secret).await;
    app.metrics.observe(Phase::Auth, started.elapsed());
    match principal {
        Ok(Some(principal)) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Ok(None) => unauthenticated("invalid_api_key", "the API key is not known (or was revoked)"),
        Err(e) => e.into_response(),
    }
}

fn unauthenticated(code: &'static str, message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, code, message).into_response();
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"shoal\""));
    response
}

/// Refuses a principal that is not an operator, with 403.
pub(crate) fn operator_only(principal: &Principal) -> Result<(), ApiError> {
    if principal.role == Role::Operator {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only an operator key may read this"))
    }
}
