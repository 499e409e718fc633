//! A served connection's socket, read against a deadline rather than a
//! per-read timeout: a client that trickles a byte now and then (slowloris)
//! still runs out of time.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Instant;

/// Reads from `stream` until `deadline`; later reads fail with `TimedOut`.
#[derive(Debug)]
pub(crate) struct Timed {
    stream: TcpStream,
    deadline: Instant,
}

impl Timed {
    pub(crate) fn new(stream: TcpStream, deadline: Instant) -> Self {
        Timed { stream, deadline }
    }

    /// Moves the deadline (to the next phase of a request).
    pub(crate) fn until(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// The socket, for writing.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        match self.stream.read(buf) {
            // What a read timeout looks like on Unix.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                Err(io::ErrorKind::TimedOut.into())
            }
            read => read,
        }
    }
}
