//! Slurm's node lists (`node[01-04,7]`) and task counts (`2(x3),1`), and PBS node files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prun_launcher::allocation;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = allocation::slurm_nodelist(&text);
    let _ = allocation::slurm_tasks_per_node(&text);
    let _ = allocation::pbs_nodefile(&text);
});
