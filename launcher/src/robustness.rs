//! Bounded random-input tests of every parser and decoder of the launcher: hostfiles, `--host`
//! lists, Slurm and PBS forms, and the agent channel's messages. Each must return an error or a
//! value for any input, never panic, hang or allocate by what the input claims.

#[cfg(test)]
mod tests {
    use crate::agent_wire::{self, FromAgent, ToAgent};
    use crate::{allocation, hostfile};

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Bytes(u64);

    impl Bytes {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Random bytes, biased towards the characters the grammars use.
        fn text(&mut self, len: usize) -> String {
            const ALPHABET: &[u8] = b"ab0129:=[]-,()x# \n\tslotsmax_@.:::\xff";
            (0..len).map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char).collect()
        }

        fn raw(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn parsers_take_any_text() {
        let mut g = Bytes(0x1234_5678_9abc_def1);
        for i in 0..20_000 {
            let text = g.text(i % 120);
            let _ = hostfile::parse_hostfile_text("fuzz", &text);
            let _ = hostfile::parse_host_list(&text);
            let _ = allocation::slurm_nodelist(&text);
            let _ = allocation::slurm_tasks_per_node(&text);
            let _ = allocation::pbs_nodefile(&text);
        }
    }

    #[test]
    fn agent_messages_take_any_bytes() {
        let mut g = Bytes(0x0ddb_a11c_afe0_0001);
        let good = {
            let mut v = Vec::new();
            agent_wire::send(&mut v, &FromAgent::Exited { rank: 3, code: Some(1), signal: 0, core: false })
                .expect("encode");
            v
        };
        for i in 0..20_000 {
            // random bytes, and a valid message with some of its bytes changed
            let mut bytes = if i % 2 == 0 { g.raw(i % 200) } else { good.clone() };
            if i % 2 == 1 {
                for _ in 0..1 + i % 4 {
                    let at = (g.next() % bytes.len() as u64) as usize;
                    bytes[at] = g.next() as u8;
                }
            }
            let _ = agent_wire::recv::<_, FromAgent>(&mut bytes.as_slice());
            let _ = agent_wire::recv::<_, ToAgent>(&mut bytes.as_slice());
        }
    }

    /// Inputs the fuzz targets once crashed on (`fuzz/regressions/TARGET/`), replayed through
    /// the same parsers.
    #[test]
    fn fuzz_regressions() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        let mut replayed = 0;
        for target in ["hostfile", "allocation", "agent_wire"] {
            let Ok(files) = std::fs::read_dir(root.join(target)) else { continue };
            for file in files.flatten() {
                let data = std::fs::read(file.path()).expect("read a regression input");
                let text = String::from_utf8_lossy(&data);
                let _ = hostfile::parse_hostfile_text("fuzz", &text);
                let _ = hostfile::parse_host_list(&text);
                let _ = allocation::slurm_nodelist(&text);
                let _ = allocation::slurm_tasks_per_node(&text);
                let _ = allocation::pbs_nodefile(&text);
                let mut rest = &data[..];
                while let Ok(Some(_)) = agent_wire::recv::<_, ToAgent>(&mut rest) {}
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no regression inputs under {}", root.display());
    }
}
