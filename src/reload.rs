//! What the process reads from files the config names — the TLS certificate and the users —
//! once at start, and again on SIGHUP. A file that is wrong at start stops the broker with
//! the reason; on SIGHUP it is logged and what was in use stays.

use std::sync::Arc;

use crate::config::Config;
use crate::security::Authenticator;
use crate::transport::tls::Tls;

/// Loaded once per process and shared by every broker it starts (a standby that takes over
/// uses the same).
#[derive(Debug, Clone)]
pub struct Reloadable {
    /// The TLS listeners' certificate, when any TLS listener is configured.
    pub tls: Option<Arc<Tls>>,
    pub auth: Arc<Authenticator>,
}

impl Reloadable {
    pub fn load(config: &Config) -> anyhow::Result<Reloadable> {
        let tls = match config.tls_listeners() {
            true => Some(Arc::new(Tls::load(&config.tls)?)),
            false => None,
        };
        let auth = Authenticator::start(&config.security).map_err(anyhow::Error::msg)?;
        Ok(Reloadable { tls, auth })
    }

    /// SIGHUP: reads every file again; each failure is logged and keeps what was in use.
    pub fn reload(&self) {
        match &self.tls {
            None => log::info!("SIGHUP: no TLS listener configured"),
            Some(tls) => match tls.reload() {
                Ok(()) => log::info!("SIGHUP: TLS certificate reloaded; new connections use it"),
                Err(e) => {
                    log::error!("SIGHUP: TLS reload failed, keeping the certificate in use: {e}")
                }
            },
        }
        match self.auth.reload() {
            Ok(n) => log::info!("SIGHUP: {n} users reloaded"),
            Err(e) => log::error!("SIGHUP: users reload failed, keeping the users in use: {e}"),
        }
    }
}
