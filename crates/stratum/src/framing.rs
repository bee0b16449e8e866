//! Bytes to lines: newline-delimited framing with a maximum line length.
//!
//! The socket task pushes whatever it read; [`LineFramer::next_line`] hands
//! back complete lines (`Ok(None)` means "need more bytes"). A line longer
//! than the limit is reported once as [`FrameError::TooLong`] and its bytes
//! are dropped up to the next newline, so a hostile peer cannot make the
//! buffer grow without bound.

/// Why a line could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More than the limit arrived without a newline.
    #[error("line longer than {max} bytes")]
    TooLong {
        /// The configured limit.
        max: usize,
    },
    /// The line is not UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
}

/// Splits a byte stream into lines of at most `max_line` bytes.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    start: usize,
    max_line: usize,
    /// Dropping the rest of an overlong line.
    discarding: bool,
}

impl LineFramer {
    /// A framer refusing lines longer than `max_line` bytes (without the
    /// terminator).
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            buf: Vec::new(),
            start: 0,
            max_line,
            discarding: false,
        }
    }

    /// Appends bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held but not yet returned as lines.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete line, without its `\n` or `\r\n`; blank lines are
    /// skipped. `Ok(None)`: wait for more bytes.
    pub fn next_line(&mut self) -> Result<Option<String>, FrameError> {
        loop {
            let unread = &self.buf[self.start..];
            let Some(pos) = unread.iter().position(|&b| b == b'\n') else {
                if unread.len() > self.max_line {
                    // Keep nothing of it; keep dropping until a newline.
                    self.buf.clear();
                    self.start = 0;
                    if !self.discarding {
                        self.discarding = true;
                        return Err(FrameError::TooLong { max: self.max_line });
                    }
                }
                self.compact();
                return Ok(None);
            };
            let line_end = self.start + pos;
            let line = &self.buf[self.start..line_end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let too_long = line.len() > self.max_line;
            let was_discarding = std::mem::replace(&mut self.discarding, false);
            let result = if was_discarding {
                None
            } else if too_long {
                Some(Err(FrameError::TooLong { max: self.max_line }))
            } else if line.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(
                    std::str::from_utf8(line)
                        .map(str::to_owned)
                        .map_err(|_| FrameError::NotUtf8),
                )
            };
            self.start = line_end + 1;
            match result {
                Some(Ok(line)) => return Ok(Some(line)),
                Some(Err(e)) => return Err(e),
                None => continue,
            }
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(f: &mut LineFramer) -> Vec<Result<String, FrameError>> {
        let mut out = vec![];
        loop {
            match f.next_line() {
                Ok(Some(l)) => out.push(Ok(l)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e)),
            }
        }
    }

    #[test]
    fn lines_split_across_reads_and_crlf() {
        let mut f = LineFramer::new(64);
        f.push(b"{\"a\":1}\r\n{\"b\"");
        assert_eq!(lines(&mut f), vec![Ok("{\"a\":1}".to_owned())]);
        f.push(b":2}\n\n  \r\n{\"c\":3}\n");
        assert_eq!(
            lines(&mut f),
            vec![Ok("{\"b\":2}".to_owned()), Ok("{\"c\":3}".to_owned())]
        );
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_dropped() {
        let mut f = LineFramer::new(8);
        f.push(b"0123456789abcdef");
        assert_eq!(lines(&mut f), vec![Err(FrameError::TooLong { max: 8 })]);
        assert_eq!(f.pending(), 0, "the buffer does not grow");
        f.push(b"more junk without end");
        assert_eq!(lines(&mut f), vec![]);
        f.push(b"tail\nok\n");
        assert_eq!(lines(&mut f), vec![Ok("ok".to_owned())]);
        // Overlong but complete in one read.
        f.push(b"0123456789\nfine\n");
        assert_eq!(
            lines(&mut f),
            vec![Err(FrameError::TooLong { max: 8 }), Ok("fine".to_owned())]
        );
    }

    #[test]
    fn invalid_utf8_is_an_error_for_that_line_only() {
        let mut f = LineFramer::new(64);
        f.push(b"\xff\xfe\nok\n");
        assert_eq!(
            lines(&mut f),
            vec![Err(FrameError::NotUtf8), Ok("ok".to_owned())]
        );
    }
}
