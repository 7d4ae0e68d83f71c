//! Transports in front of the codec. Today: plain TCP, optionally preceded by a PROXY
//! protocol header from a load balancer (`proxy.rs`).

pub mod proxy;
