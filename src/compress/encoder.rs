//! Streaming encoders with bounded buffers (SEAM: lane compress completes this).

use super::negotiate::Coding;
use super::policy::CompressPolicy;

/// One response body's encoder.
pub struct Encoder {
    coding: Coding,
}

impl Encoder {
    pub fn new(policy: &CompressPolicy, coding: Coding) -> Encoder {
        let _ = policy;
        Encoder { coding }
    }

    pub fn coding(&self) -> Coding {
        self.coding
    }

    /// Compresses `input`, appending whatever output is ready to `out`.
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(input);
    }

    /// Appends output ready so far without ending the stream (a streamed response's flush).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }

    /// Ends the stream, appending the rest of the output.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }
}
