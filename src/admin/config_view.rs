//! `GET /admin/config`: the configuration in force, secrets redacted, so an
//! operator can see what environment variables and files added up to.

use std::sync::Arc;

use warp::Filter;
use warp::reply::{Reply, Response};

use super::AdminState;

pub(super) fn route(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    warp::path!("config")
        .and(warp::get())
        .map(move || warp::reply::json(&state.settings.redacted()).into_response())
}
