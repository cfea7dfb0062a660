//! The controller's own serving certificate, obtained from tulle-identity with its
//! ServiceAccount token (like a proxy would) and renewed at 70 % of its lifetime.

use std::{path::PathBuf, sync::Arc, time::Duration};
use tonic::transport::Channel;
use tulle_api::{
    ServiceAccountIdentity,
    certify::{SwappableCert, certify, renew_after},
    identity::identity_client::IdentityClient,
};

/// The first delay after a failure; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest delay between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Keeps `cert` current forever: certify, install, sleep, renew; back off on failure and
/// keep serving the current certificate meanwhile.
pub(crate) async fn maintain(
    cert: Arc<SwappableCert>,
    channel: Channel,
    id: ServiceAccountIdentity,
    token_file: PathBuf,
) {
    let mut client = IdentityClient::new(channel);
    let mut backoff = RETRY_MIN;
    loop {
        let token = match tokio::fs::read_to_string(&token_file).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %token_file.display(), error = %e, "cannot read the ServiceAccount token; mount a projected token with audience identity.tulle.io");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        match certify(&mut client, &id, &token).await {
            Ok(c) => {
                cert.set(c.key);
                backoff = RETRY_MIN;
                let wait = renew_after(c.valid_until);
                tracing::info!(identity = %id, renew_in = ?wait, "serving certificate obtained from identity");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot get a serving certificate from identity; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}
