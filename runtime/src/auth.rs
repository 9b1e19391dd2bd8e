//! Mutual challenge-response authentication of every connection of a job.
//!
//! Both ends know the per-job [`Secret`]; neither sends it. The client opens with
//! `MAGIC, version, job id, its id, a random nonce`; the server checks the magic, the version and
//! the job id, answers with its own nonce and a MAC over both nonces (proving it knows the
//! secret); the client checks that and answers with its MAC (proving the same); the server
//! checks it and sends one verdict byte. MACs are BLAKE3 in keyed mode, compared in constant
//! time. A stranger that sends nothing, garbage or a wrong MAC is dropped within
//! [`HANDSHAKE_TIMEOUT`] after reading at most a few hundred bytes.

use std::io::{self, Read, Write};
use std::time::Duration;

/// First bytes of every connection.
pub const MAGIC: [u8; 4] = *b"PRUN";
/// Version of the wire protocol; peers with another version are refused. Raised whenever a
/// message changes shape (2: [`crate::protocol::Peer`] says whether its host is crowded; 3: a
/// rank's activity names the collective call it waits in, [`crate::protocol::CallAt`]; 4: a
/// lent message's frame counts its pieces in memory, none for a pipe, in its fixed part; 5: a
/// rank that accepts a connection from another tells it what it can take from it,
/// `lend::Access`, and a lent message's frame carries flags, `lend::RENDEZVOUS` among them, in
/// place of markers for memory; 6: a receiver no longer allowed to read a lent message out of
/// its sender's memory answers `lend::UNREADABLE` before it closes the connection).
pub const PROTOCOL_VERSION: u16 = 6;
/// How long either end waits for the other during the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest job id accepted.
pub const MAX_JOB_ID: usize = 64;

const NONCE: usize = 32;
const MAC: usize = 32;
const ACCEPTED: u8 = 0xA5;

/// The per-job secret: 32 random bytes.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A new random secret from the operating system's generator.
    pub fn generate() -> io::Result<Secret> {
        let mut key = [0; 32];
        getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Secret(key))
    }

    /// The secret as 64 lowercase hex digits (for the environment of ranks).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Secret> {
        let text = text.trim().as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut key = [0; 32];
        for (byte, pair) in key.iter_mut().zip(text.chunks(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Secret(key))
    }
}

/// What both ends of a connection must agree on.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The job's id (`PRUN_JOB_ID`).
    pub job_id: String,
    /// The job's secret (`PRUN_SECRET`).
    pub secret: Secret,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The peer is not a prun peer.
    #[error("not a prun peer ({0})")]
    Protocol(String),
    /// The peer speaks another version of the protocol: it was built against another version of
    /// the `prun` crate.
    #[error("the peer speaks prun protocol version {theirs}, this process version {PROTOCOL_VERSION}")]
    Version {
        /// The peer's version.
        theirs: u16,
    },
    /// The peer belongs to another job.
    #[error("peer belongs to another job")]
    WrongJob,
    /// The peer does not know the job's secret.
    #[error("peer failed to prove it knows the job's secret")]
    BadProof,
    /// The connection failed or timed out.
    #[error("connection failed during the handshake: {0}")]
    Io(#[from] io::Error),
}

fn mac(creds: &Credentials, role: &[u8], id: u32, first: &[u8], second: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(&creds.secret.0);
    h.update(role);
    h.update(&(creds.job_id.len() as u32).to_le_bytes());
    h.update(creds.job_id.as_bytes());
    h.update(&id.to_le_bytes());
    h.update(first);
    h.update(second);
    h.finalize()
}

fn nonce() -> io::Result<[u8; NONCE]> {
    let mut n = [0; NONCE];
    getrandom::fill(&mut n).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(n)
}

/// Client side: proves membership of the job as `id` (a rank, or another agreed number) and
/// checks that the server is a member too. On success the connection carries frames.
pub fn client<S: Read + Write + ?Sized>(
    stream: &mut S,
    creds: &Credentials,
    id: u32,
) -> Result<(), AuthError> {
    let job = creds.job_id.as_bytes();
    if job.len() > MAX_JOB_ID {
        return Err(AuthError::Protocol(format!("job id longer than {MAX_JOB_ID} bytes")));
    }
    let mine = nonce()?;
    let mut hello = Vec::with_capacity(4 + 2 + 1 + job.len() + 4 + NONCE);
    hello.extend_from_slice(&MAGIC);
    hello.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    hello.push(job.len() as u8);
    hello.extend_from_slice(job);
    hello.extend_from_slice(&id.to_le_bytes());
    hello.extend_from_slice(&mine);
    stream.write_all(&hello)?;

    let mut challenge = [0; NONCE + MAC];
    stream.read_exact(&mut challenge)?;
    let (theirs, their_mac) = challenge.split_at(NONCE);
    let expected = mac(creds, b"prun-server", id, &mine, theirs);
    if expected != blake3::Hash::from_bytes(slice32(their_mac)) {
        return Err(AuthError::BadProof);
    }
    let proof = mac(creds, b"prun-client", id, theirs, &mine);
    stream.write_all(proof.as_bytes())?;
    let mut verdict = [0; 1];
    stream.read_exact(&mut verdict)?;
    if verdict[0] != ACCEPTED {
        return Err(AuthError::Protocol("server refused the connection".into()));
    }
    Ok(())
}

/// Server side: checks that the client is a member of the job and proves the same to it.
///
/// `claimed` is called with the id the client claims as soon as it is read (before the proof)
/// and refuses the connection by returning `false`; `accepted` is called just before the
/// verdict is sent, so that the caller can account for a connection before the peer can send
/// anything on it. Returns the client's id.
pub fn server<S: Read + Write + ?Sized>(
    stream: &mut S,
    creds: &Credentials,
    claimed: impl FnOnce(u32) -> bool,
    accepted: impl FnOnce(u32),
) -> Result<u32, AuthError> {
    let mut head = [0; 7];
    stream.read_exact(&mut head)?;
    if head[..4] != MAGIC {
        return Err(AuthError::Protocol("bad magic".into()));
    }
    let version = u16::from_le_bytes([head[4], head[5]]);
    if version != PROTOCOL_VERSION {
        return Err(AuthError::Version { theirs: version });
    }
    let job_len = head[6] as usize;
    if job_len > MAX_JOB_ID {
        return Err(AuthError::Protocol("job id too long".into()));
    }
    let mut rest = vec![0; job_len + 4 + NONCE];
    stream.read_exact(&mut rest)?;
    let (job, rest) = rest.split_at(job_len);
    if job != creds.job_id.as_bytes() {
        return Err(AuthError::WrongJob);
    }
    let (id, theirs) = rest.split_at(4);
    let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
    if !claimed(id) {
        return Err(AuthError::Protocol(format!("unexpected peer id {id}")));
    }
    let mine = nonce()?;
    let proof = mac(creds, b"prun-server", id, theirs, &mine);
    let mut challenge = Vec::with_capacity(NONCE + MAC);
    challenge.extend_from_slice(&mine);
    challenge.extend_from_slice(proof.as_bytes());
    stream.write_all(&challenge)?;

    let mut their_mac = [0; MAC];
    stream.read_exact(&mut their_mac)?;
    let expected = mac(creds, b"prun-client", id, &mine, theirs);
    if expected != blake3::Hash::from_bytes(their_mac) {
        return Err(AuthError::BadProof);
    }
    accepted(id);
    stream.write_all(&[ACCEPTED])?;
    Ok(id)
}

fn slice32(s: &[u8]) -> [u8; 32] {
    let mut a = [0; 32];
    a.copy_from_slice(&s[..32]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn creds(job: &str) -> Credentials {
        Credentials { job_id: job.into(), secret: Secret::generate().expect("random") }
    }

    fn run(
        client_creds: Credentials,
        server_creds: Credentials,
    ) -> (Result<(), AuthError>, Result<u32, AuthError>) {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let t = std::thread::spawn(move || {
            let r = client(&mut a, &client_creds, 7);
            drop(a);
            r
        });
        let s = server(&mut b, &server_creds, |_| true, |_| {});
        drop(b);
        (t.join().expect("client thread"), s)
    }

    #[test]
    fn same_job_same_secret_is_accepted() {
        let c = creds("job1");
        let (cl, sv) = run(c.clone(), c);
        assert!(cl.is_ok(), "{cl:?}");
        assert_eq!(sv.expect("server"), 7);
    }

    #[test]
    fn wrong_secret_is_refused_on_both_sides() {
        let (cl, sv) = run(creds("job1"), creds("job1"));
        assert!(matches!(cl, Err(AuthError::BadProof)), "{cl:?}");
        assert!(sv.is_err());
    }

    #[test]
    fn other_job_is_refused() {
        let c = creds("job1");
        let mut other = c.clone();
        other.job_id = "job2".into();
        let (_, sv) = run(other, c);
        assert!(matches!(sv, Err(AuthError::WrongJob)), "{sv:?}");
    }

    #[test]
    fn garbage_is_refused() {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
        drop(a);
        let sv = server(&mut b, &creds("j"), |_| true, |_| {});
        assert!(matches!(sv, Err(AuthError::Protocol(_))), "{sv:?}");
    }

    #[test]
    fn another_protocol_version_is_named() {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        a.write_all(b"PRUN\x01\x00\x03job").expect("write");
        drop(a);
        let sv = server(&mut b, &creds("job"), |_| true, |_| {});
        assert!(matches!(sv, Err(AuthError::Version { theirs: 1 })), "{sv:?}");
    }

    #[test]
    fn hex_round_trip() {
        let s = Secret::generate().expect("random");
        let back = Secret::from_hex(&s.to_hex()).expect("parse");
        assert_eq!(back.0, s.0);
        assert!(Secret::from_hex("zz").is_none());
        assert!(Secret::from_hex(&"g".repeat(64)).is_none());
    }
}
