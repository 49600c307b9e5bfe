//! Scale-out: several instances, sharded by trace id, summed into one view. [`exchange`] maps
//! every aggregate the scorers read to `chokepoint_*` series and back; [`remote_write`] pushes
//! those series to a Prometheus-compatible store; [`global`] reads them back, summed, and
//! scores the sum as one instance would.

pub mod exchange;
pub mod global;
pub mod remote_write;
