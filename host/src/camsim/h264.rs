//! H.264 bitstream handling for the simulator: Annex B splitting, access-unit
//! grouping, building a loopable clip, and RTP packetization (RFC 6184).
//!
//! Everything here works on borrowed byte slices and never panics on malformed
//! input: an input file is untrusted, so errors are reported, not asserted.

use anyhow::{Context, bail};

/// NAL unit types (H.264 table 7-1) that matter here.
pub(crate) mod nal_type {
    pub(crate) const SLICE: u8 = 1;
    pub(crate) const IDR: u8 = 5;
    pub(crate) const SEI: u8 = 6;
    pub(crate) const SPS: u8 = 7;
    pub(crate) const PPS: u8 = 8;
    pub(crate) const AUD: u8 = 9;
    pub(crate) const END_OF_SEQUENCE: u8 = 10;
    pub(crate) const END_OF_STREAM: u8 = 11;
    pub(crate) const FILLER: u8 = 12;
}

/// RTP payload type announced in the SDP.
pub(crate) const RTP_PAYLOAD_TYPE: u8 = 96;

/// Largest RTP payload we emit. Keeps packets under a typical 1500-byte MTU
/// (clients that re-send over UDP or log per-packet sizes like this).
pub(crate) const MAX_RTP_PAYLOAD: usize = 1400;

/// Interleaved header (`$`, channel, u16 length) plus the 12-byte RTP header.
const PACKET_HEADER_LEN: usize = 4 + 12;

/// Returns the `nal_unit_type` of a NAL unit (0 for an empty one).
pub(crate) fn nal_unit_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

fn is_vcl(t: u8) -> bool {
    (nal_type::SLICE..=nal_type::IDR).contains(&t)
}

/// Splits an Annex B byte stream into NAL units (without start codes).
///
/// Bytes before the first start code are ignored; trailing zero bytes of a NAL
/// (the leading zero of a 4-byte start code, or `trailing_zero_8bits`) are
/// trimmed, which is safe because a NAL unit always ends in a non-zero byte.
pub(crate) fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        // If the third byte is > 1, no start code can begin at i, i+1 or i+2.
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let mut nal = &data[s + 3..end];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    nals
}

/// Groups NAL units into access units (pictures).
///
/// A new access unit starts at an AUD, SPS, PPS, SEI (or types 14..=18) that
/// follows a slice of the current one, or at a slice whose `first_mb_in_slice`
/// is 0. `first_mb_in_slice` is the first Exp-Golomb value after the one-byte
/// header; it is 0 exactly when its first bit is 1.
pub(crate) fn split_access_units<'a>(nals: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut aus = Vec::new();
    let mut current: Vec<&'a [u8]> = Vec::new();
    let mut current_has_vcl = false;
    for &nal in nals {
        let t = nal_unit_type(nal);
        let starts_new = current_has_vcl
            && match t {
                nal_type::AUD | nal_type::SPS | nal_type::PPS | nal_type::SEI | 14..=18 => true,
                t if is_vcl(t) => nal.get(1).is_some_and(|b| b & 0x80 != 0),
                _ => false,
            };
        if starts_new {
            aus.push(std::mem::take(&mut current));
            current_has_vcl = false;
        }
        current_has_vcl |= is_vcl(t);
        current.push(nal);
    }
    if !current.is_empty() {
        aus.push(current);
    }
    aus
}

/// One access unit, pre-packetized as interleaved RTP packets.
///
/// `wire` holds every packet ready to send except the per-session fields
/// (interleaved channel, sequence number, timestamp, SSRC), which
/// [`Frame::write_to`] patches in. The marker bit is already set on the last
/// packet. Preparing this once and sharing it is what makes 1000 sessions cheap:
/// a session's per-frame work is one memcpy, a few header patches and one write.
#[derive(Debug, Clone, Default)]
pub(crate) struct Frame {
    wire: Vec<u8>,
    /// Offset in `wire` of each packet's `$`.
    packet_offsets: Vec<u32>,
    /// Total RTP payload bytes (for the RTCP sender report octet count).
    payload_octets: u32,
    /// Contains an IDR slice (and then SPS and PPS before it).
    pub(crate) idr: bool,
}

impl Frame {
    /// Packetizes one access unit: single NAL unit packets for NALs up to
    /// [`MAX_RTP_PAYLOAD`], FU-A fragments for larger ones (RFC 6184 5.6, 5.8).
    pub(crate) fn packetize(nals: &[&[u8]]) -> Frame {
        let mut frame = Frame::default();
        for &nal in nals {
            let Some(&header) = nal.first() else { continue };
            frame.idr |= header & 0x1f == nal_type::IDR;
            if nal.len() <= MAX_RTP_PAYLOAD {
                frame.push_packet(&[], nal);
                continue;
            }
            // FU indicator keeps F and NRI of the NAL header, type 28 (FU-A);
            // the FU header carries start/end flags and the original type.
            let indicator = (header & 0xe0) | 28;
            let body = &nal[1..];
            let n = body.len().div_ceil(MAX_RTP_PAYLOAD - 2);
            for (i, chunk) in body.chunks(MAX_RTP_PAYLOAD - 2).enumerate() {
                let mut fu_header = header & 0x1f;
                if i == 0 {
                    fu_header |= 0x80;
                }
                if i + 1 == n {
                    fu_header |= 0x40;
                }
                frame.push_packet(&[indicator, fu_header], chunk);
            }
        }
        if let Some(&last) = frame.packet_offsets.last() {
            frame.wire[last as usize + 5] |= 0x80; // RTP marker: end of access unit
        }
        frame
    }

    fn push_packet(&mut self, prefix: &[u8], body: &[u8]) {
        let payload = prefix.len() + body.len();
        let len = (12 + payload) as u16; // payload <= MAX_RTP_PAYLOAD, so this fits
        self.packet_offsets.push(self.wire.len() as u32);
        let [len_hi, len_lo] = len.to_be_bytes();
        self.wire.extend_from_slice(&[
            b'$',
            0,
            len_hi,
            len_lo,
            0x80, // V=2, no padding/extension/CSRC
            RTP_PAYLOAD_TYPE,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ]);
        self.wire.extend_from_slice(prefix);
        self.wire.extend_from_slice(body);
        self.payload_octets = self.payload_octets.wrapping_add(payload as u32);
    }

    /// Number of RTP packets in this frame.
    pub(crate) fn packet_count(&self) -> usize {
        self.packet_offsets.len()
    }

    pub(crate) fn payload_octets(&self) -> u32 {
        self.payload_octets
    }

    /// Appends the frame's packets to `out` as interleaved frames on `channel`,
    /// numbering them from `*seq` (advanced past the last one).
    pub(crate) fn write_to(
        &self,
        out: &mut Vec<u8>,
        channel: u8,
        seq: &mut u16,
        timestamp: u32,
        ssrc: u32,
    ) {
        let base = out.len();
        out.extend_from_slice(&self.wire);
        let ts = timestamp.to_be_bytes();
        let ssrc = ssrc.to_be_bytes();
        for &off in &self.packet_offsets {
            let p = base + off as usize;
            out[p + 1] = channel;
            out[p + 6..p + 8].copy_from_slice(&seq.to_be_bytes());
            out[p + 8..p + 12].copy_from_slice(&ts);
            out[p + 12..p + PACKET_HEADER_LEN].copy_from_slice(&ssrc);
            *seq = seq.wrapping_add(1);
        }
    }
}

/// A loopable sequence of frames that starts with an IDR, plus the parameter
/// sets announced in the SDP.
#[derive(Debug)]
pub(crate) struct Clip {
    pub(crate) frames: Vec<Frame>,
    pub(crate) sps: Vec<u8>,
    pub(crate) pps: Vec<u8>,
}

/// Builds a clip from access units: drops everything before the first IDR,
/// drops AUD/end-of-sequence/end-of-stream/filler NALs (not needed over RTP),
/// and makes sure SPS and PPS precede every IDR so a client can start at any
/// key frame, including after the loop wraps around.
pub(crate) fn build_clip(aus: &[Vec<&[u8]>]) -> anyhow::Result<Clip> {
    let mut sps: Option<&[u8]> = None;
    let mut pps: Option<&[u8]> = None;
    let mut announced: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut frames = Vec::new();
    let mut saw_idr = false;
    for au in aus {
        let (mut has_sps, mut has_pps, mut has_idr, mut has_vcl) = (false, false, false, false);
        for &nal in au {
            match nal_unit_type(nal) {
                nal_type::SPS => {
                    has_sps = true;
                    sps = Some(nal);
                }
                nal_type::PPS => {
                    has_pps = true;
                    pps = Some(nal);
                }
                t => {
                    has_idr |= t == nal_type::IDR;
                    has_vcl |= is_vcl(t);
                }
            }
        }
        saw_idr |= has_idr;
        if (frames.is_empty() && !has_idr) || !has_vcl {
            continue;
        }
        let (Some(sps), Some(pps)) = (sps, pps) else {
            bail!("an IDR picture is not preceded by both an SPS and a PPS");
        };
        if announced.is_none() {
            announced = Some((sps.to_vec(), pps.to_vec()));
        }
        let keep = |nal: &&[u8]| {
            !matches!(
                nal_unit_type(nal),
                nal_type::AUD
                    | nal_type::END_OF_SEQUENCE
                    | nal_type::END_OF_STREAM
                    | nal_type::FILLER
            )
        };
        let nals: Vec<&[u8]> = if has_idr && !(has_sps && has_pps) {
            [sps, pps]
                .into_iter()
                .chain(au.iter().copied().filter(|n| {
                    keep(n) && !matches!(nal_unit_type(n), nal_type::SPS | nal_type::PPS)
                }))
                .collect()
        } else {
            au.iter().copied().filter(keep).collect()
        };
        frames.push(Frame::packetize(&nals));
    }
    let Some((sps, pps)) = announced else {
        if sps.is_none() {
            bail!("no SPS found");
        }
        if pps.is_none() {
            bail!("no PPS found");
        }
        if !saw_idr {
            bail!("no IDR picture found");
        }
        bail!("no decodable picture found");
    };
    if sps.len() < 4 {
        bail!("SPS is truncated ({} bytes)", sps.len());
    }
    Ok(Clip { frames, sps, pps })
}

/// Builds a clip from an Annex B elementary stream file's contents.
pub(crate) fn clip_from_annex_b(data: &[u8]) -> anyhow::Result<Clip> {
    let nals = split_annex_b(data);
    if nals.is_empty() {
        bail!("no H.264 start codes found (expected an Annex B elementary stream)");
    }
    build_clip(&split_access_units(&nals)).context("not a usable H.264 stream")
}

/// `profile-level-id` for the SDP: profile_idc, constraint flags, level_idc.
pub(crate) fn profile_level_id(sps: &[u8]) -> String {
    sps.get(1..4)
        .map(|b| format!("{:02X}{:02X}{:02X}", b[0], b[1], b[2]))
        .unwrap_or_else(|| "42E01F".to_owned())
}

/// Standard base64 with padding (RFC 4648), for `sprop-parameter-sets`.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn splits_annex_b_with_mixed_start_codes() {
        let data = [
            0xAA, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 0x88, 0, 0,
        ];
        let nals = split_annex_b(&data);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 0x88]]);
        assert!(split_annex_b(&[]).is_empty());
        assert!(split_annex_b(&[0, 0, 1]).is_empty());
        assert!(split_annex_b(&[1, 2, 3, 4, 5]).is_empty());
    }

    #[test]
    fn groups_access_units() {
        let sps: &[u8] = &[0x67, 0x42, 0, 0x1e];
        let pps: &[u8] = &[0x68, 0xce];
        let aud: &[u8] = &[0x09, 0xf0];
        let idr0: &[u8] = &[0x65, 0x88]; // first_mb_in_slice = 0
        let idr1: &[u8] = &[0x65, 0x20]; // a second slice of the same picture
        let p0: &[u8] = &[0x41, 0x9a];
        let p1: &[u8] = &[0x41, 0x9b];
        let sei: &[u8] = &[0x06, 0x05];
        let aus = split_access_units(&[aud, sps, pps, idr0, idr1, p0, sei, p1, aud, p0]);
        assert_eq!(
            aus,
            vec![
                vec![aud, sps, pps, idr0, idr1],
                vec![p0],
                vec![sei, p1],
                vec![aud, p0]
            ]
        );
    }

    /// Reassembles the RTP payloads of a frame back into NAL units.
    fn depacketize(frame: &Frame) -> (Vec<Vec<u8>>, Vec<bool>) {
        let mut out = Vec::new();
        frame.write_to(&mut out, 0, &mut 0, 0, 0);
        let mut nals: Vec<Vec<u8>> = Vec::new();
        let mut markers = Vec::new();
        let mut p = 0;
        while p < out.len() {
            assert_eq!(out[p], b'$');
            let len = usize::from(u16::from_be_bytes([out[p + 2], out[p + 3]]));
            let rtp = &out[p + 4..p + 4 + len];
            assert!(rtp.len() - 12 <= MAX_RTP_PAYLOAD);
            markers.push(rtp[1] & 0x80 != 0);
            let payload = &rtp[12..];
            if payload[0] & 0x1f == 28 {
                if payload[1] & 0x80 != 0 {
                    nals.push(vec![(payload[0] & 0xe0) | (payload[1] & 0x1f)]);
                }
                nals.last_mut().unwrap().extend_from_slice(&payload[2..]);
            } else {
                nals.push(payload.to_vec());
            }
            p += 4 + len;
        }
        (nals, markers)
    }

    #[test]
    fn packetizes_small_and_fragmented_nals() {
        let sps = vec![0x67, 0x42, 0, 0x1e];
        let mut idr = vec![0x65];
        idr.extend((0..5000u32).map(|i| (i % 251) as u8 + 1));
        let frame = Frame::packetize(&[&sps, &idr]);
        assert!(frame.idr);
        assert_eq!(
            frame.packet_count(),
            1 + 5000usize.div_ceil(MAX_RTP_PAYLOAD - 2)
        );
        let (nals, markers) = depacketize(&frame);
        assert_eq!(nals, vec![sps, idr]);
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert!(markers.last().unwrap());
    }

    #[test]
    fn write_to_numbers_packets() {
        let big = vec![0x41; 3000];
        let frame = Frame::packetize(&[&big]);
        let mut out = Vec::new();
        let mut seq = 0xfffe;
        frame.write_to(&mut out, 4, &mut seq, 0x01020304, 0xdeadbeef);
        assert_eq!(seq, 1);
        assert_eq!(out[1], 4);
        assert_eq!(&out[6..8], &[0xff, 0xfe]);
        assert_eq!(&out[8..12], &[1, 2, 3, 4]);
        assert_eq!(&out[12..16], &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn clip_inserts_parameter_sets_and_starts_at_idr() {
        let sps: &[u8] = &[0x67, 0x42, 0xc0, 0x1e];
        let pps: &[u8] = &[0x68, 0xce];
        let p: &[u8] = &[0x41, 0x9a];
        let idr: &[u8] = &[0x65, 0x88];
        let aud: &[u8] = &[0x09, 0xf0];
        // Leading P frame is dropped; the second IDR gets SPS/PPS inserted.
        let data: Vec<u8> = [p, sps, pps, idr, aud, p, aud, idr, p]
            .iter()
            .flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat())
            .collect();
        let clip = clip_from_annex_b(&data).unwrap();
        assert_eq!(clip.frames.len(), 4);
        assert_eq!(clip.sps, sps);
        assert_eq!(clip.pps, pps);
        let idrs: Vec<bool> = clip.frames.iter().map(|f| f.idr).collect();
        assert_eq!(idrs, vec![true, false, true, false]);
        let (nals, _) = depacketize(&clip.frames[2]);
        assert_eq!(nals, vec![sps.to_vec(), pps.to_vec(), idr.to_vec()]);
        let (nals, _) = depacketize(&clip.frames[1]);
        assert_eq!(nals, vec![p.to_vec()], "AUD is dropped");
        assert_eq!(profile_level_id(sps), "42C01E");
    }

    #[test]
    fn clip_errors_are_clear() {
        let annex_b = |nals: &[&[u8]]| -> Vec<u8> {
            nals.iter()
                .flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat())
                .collect()
        };
        let err = |data: &[u8]| format!("{:#}", clip_from_annex_b(data).unwrap_err());
        assert!(err(b"not h264 at all").contains("start codes"));
        assert!(err(&annex_b(&[&[0x41, 0x9a]])).contains("no SPS"));
        assert!(err(&annex_b(&[&[0x67, 0x42, 0, 0x1e], &[0x41, 0x9a]])).contains("no PPS"));
        assert!(
            err(&annex_b(&[
                &[0x67, 0x42, 0, 0x1e],
                &[0x68, 0xce],
                &[0x41, 0x9a]
            ]))
            .contains("no IDR")
        );
        assert!(err(&annex_b(&[&[0x65, 0x88]])).contains("SPS and a PPS"));
    }
}
