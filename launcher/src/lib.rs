//! The launcher's parsers and wire formats, as a library: the `prun` binary uses them, and so do
//! the fuzz targets in `fuzz/` (hostfiles, `--host` lists, Slurm and PBS allocations, and the
//! messages between prun and its per-host agents).

pub mod agent_wire;
pub mod allocation;
pub mod hostfile;
