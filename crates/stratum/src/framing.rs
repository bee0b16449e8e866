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
    /// An ex-message header declared fewer bytes than the header itself:
    /// the stream cannot be framed any further.
    #[error("ex-message length {0} is shorter than its header")]
    ExLength(u16),
}

/// A frame of a connection that may carry BTCAgent ex-messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A JSON line, as [`LineFramer::next_line`] gives it.
    Line(String),
    /// A whole ex-message, header included ([`crate::agent::ExMessage::decode`]).
    Ex(Vec<u8>),
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

    /// The next line or, with `ex_messages`, the next line or ex-message
    /// (one starting with [`crate::agent::MAGIC`], at most 64 KiB by its
    /// length field). Without `ex_messages` it is [`Self::next_line`].
    pub fn next_frame(&mut self, ex_messages: bool) -> Result<Option<Frame>, FrameError> {
        if ex_messages && !self.discarding {
            // Blank bytes between frames are nobody's.
            while self
                .buf
                .get(self.start)
                .is_some_and(|b| b.is_ascii_whitespace())
            {
                self.start += 1;
            }
            let unread = &self.buf[self.start..];
            if unread.first() == Some(&crate::agent::MAGIC) {
                if unread.len() < crate::agent::HEADER_LEN {
                    self.compact();
                    return Ok(None);
                }
                let len = u16::from_le_bytes([unread[2], unread[3]]);
                if usize::from(len) < crate::agent::HEADER_LEN {
                    return Err(FrameError::ExLength(len));
                }
                let len = usize::from(len);
                if unread.len() < len {
                    self.compact();
                    return Ok(None);
                }
                let frame = unread[..len].to_vec();
                self.start += len;
                return Ok(Some(Frame::Ex(frame)));
            }
        }
        self.next_line().map(|l| l.map(Frame::Line))
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
    fn ex_messages_and_lines_share_the_stream() {
        let sub = crate::agent::ExMessage::UnregisterWorker { session_id: 0x0A0D }.encode();
        // The body holds a newline byte (0x0A): framed by length, not by line.
        let mut bytes = b"{\"id\":1}\n".to_vec();
        bytes.extend_from_slice(&sub);
        bytes.extend_from_slice(b"\r\n{\"id\":2}\n");
        bytes.extend_from_slice(&sub);
        // Byte by byte: nothing comes out early, nothing is lost.
        let mut f = LineFramer::new(64);
        let mut got = vec![];
        for b in &bytes {
            f.push(&[*b]);
            while let Some(frame) = f.next_frame(true).unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::Line("{\"id\":1}".into()),
                Frame::Ex(sub.clone()),
                Frame::Line("{\"id\":2}".into()),
                Frame::Ex(sub.clone()),
            ]
        );
        assert_eq!(f.pending(), 0);
        // A length below the header cannot be framed.
        f.push(&[0x7F, 0x04, 2, 0]);
        assert_eq!(f.next_frame(true), Err(FrameError::ExLength(2)));
        // Without ex-messages the magic byte is just a (bad) line.
        let mut f = LineFramer::new(64);
        f.push(&sub);
        f.push(b"\n");
        assert!(matches!(
            f.next_frame(false),
            Ok(Some(Frame::Line(_))) | Err(_)
        ));
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
