//! ISO BMFF (fMP4/CMAF) boxes for HLS: the init segment (`ftyp` + `moov`) and media
//! fragments (`moof` + `mdat`).
//!
//! Written by hand rather than with an MP4 crate: we need exactly two box trees,
//! byte-exact and allocation-light on a path that runs for every part of every camera,
//! and the codec-specific sample entries (`avc1`/`hvc1`/`mp4a`) already come from
//! retina. The `mp4` crates we looked at target whole-file reading/writing and would
//! add copies without removing much code.

use crate::media::StreamInfo;
use bytes::Bytes;

/// Track ids used in every init segment.
pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;

/// One sample of a fragment.
#[derive(Clone, Debug)]
pub struct Sample {
    pub duration: u32,
    pub key: bool,
    pub data: Bytes,
}

/// One track's run within a fragment.
#[derive(Debug)]
pub struct TrackRun<'a> {
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale.
    pub base_dts: u64,
    pub samples: &'a [Sample],
}

fn bx(buf: &mut Vec<u8>, typ: &[u8; 4], f: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(typ);
    f(buf);
    let size = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn full(buf: &mut Vec<u8>, typ: &[u8; 4], version: u8, flags: u32, f: impl FnOnce(&mut Vec<u8>)) {
    bx(buf, typ, |b| {
        b.extend_from_slice(&((u32::from(version) << 24) | (flags & 0xff_ffff)).to_be_bytes());
        f(b);
    });
}

fn u16be(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn u32be(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The audio track if HLS can carry it (AAC; G.711 is left to WebRTC).
pub fn hls_audio(info: &StreamInfo) -> Option<&crate::media::AudioTrack> {
    info.audio
        .as_ref()
        .filter(|a| a.codec == crate::media::AudioCodec::Aac && a.sample_entry.is_some())
}

/// The init segment for a stream generation.
pub fn init_segment(info: &StreamInfo) -> Vec<u8> {
    let mut b = Vec::with_capacity(1024);
    bx(&mut b, b"ftyp", |b| {
        b.extend_from_slice(b"iso5");
        u32be(b, 512);
        for brand in [b"iso5", b"iso6", b"cmfc", b"mp41"] {
            b.extend_from_slice(brand);
        }
    });
    bx(&mut b, b"moov", |b| {
        full(b, b"mvhd", 0, 0, |b| {
            u32be(b, 0); // creation_time
            u32be(b, 0); // modification_time
            u32be(b, 1000); // timescale
            u32be(b, 0); // duration: unknown (fragmented)
            u32be(b, 0x0001_0000); // rate 1.0
            u16be(b, 0x0100); // volume 1.0
            b.extend_from_slice(&[0; 10]);
            MATRIX.iter().for_each(|&m| u32be(b, m));
            b.extend_from_slice(&[0; 24]);
            u32be(b, AUDIO_TRACK + 1); // next_track_ID
        });
        let v = &info.video;
        trak(
            b,
            VIDEO_TRACK,
            v.timescale,
            Some((v.width, v.height)),
            &v.sample_entry,
        );
        if let Some(entry) = hls_audio(info).and_then(|a| a.sample_entry.as_ref()) {
            trak(
                b,
                AUDIO_TRACK,
                info.audio.as_ref().map_or(0, |a| a.sample_rate),
                None,
                entry,
            );
        }
        bx(b, b"mvex", |b| {
            let tracks: &[u32] = if hls_audio(info).is_some() {
                &[VIDEO_TRACK, AUDIO_TRACK]
            } else {
                &[VIDEO_TRACK]
            };
            for &id in tracks {
                full(b, b"trex", 0, 0, |b| {
                    u32be(b, id);
                    u32be(b, 1); // default_sample_description_index
                    u32be(b, 0);
                    u32be(b, 0);
                    u32be(b, 0);
                });
            }
        });
    });
    b
}

fn trak(b: &mut Vec<u8>, id: u32, timescale: u32, video: Option<(u32, u32)>, entry: &[u8]) {
    bx(b, b"trak", |b| {
        full(b, b"tkhd", 0, 3, |b| {
            u32be(b, 0);
            u32be(b, 0);
            u32be(b, id);
            u32be(b, 0); // reserved
            u32be(b, 0); // duration
            b.extend_from_slice(&[0; 8]);
            u16be(b, 0); // layer
            u16be(b, 0); // alternate_group
            u16be(b, if video.is_some() { 0 } else { 0x0100 }); // volume
            u16be(b, 0);
            MATRIX.iter().for_each(|&m| u32be(b, m));
            let (w, h) = video.unwrap_or((0, 0));
            u32be(b, w << 16);
            u32be(b, h << 16);
        });
        bx(b, b"mdia", |b| {
            full(b, b"mdhd", 0, 0, |b| {
                u32be(b, 0);
                u32be(b, 0);
                u32be(b, timescale);
                u32be(b, 0);
                u16be(b, 0x55c4); // language "und"
                u16be(b, 0);
            });
            full(b, b"hdlr", 0, 0, |b| {
                u32be(b, 0);
                b.extend_from_slice(if video.is_some() { b"vide" } else { b"soun" });
                b.extend_from_slice(&[0; 12]);
                b.extend_from_slice(if video.is_some() {
                    b"VideoHandler\0"
                } else {
                    b"SoundHandler\0"
                });
            });
            bx(b, b"minf", |b| {
                if video.is_some() {
                    full(b, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                } else {
                    full(b, b"smhd", 0, 0, |b| b.extend_from_slice(&[0; 4]));
                }
                bx(b, b"dinf", |b| {
                    full(b, b"dref", 0, 0, |b| {
                        u32be(b, 1);
                        full(b, b"url ", 0, 1, |_| {});
                    });
                });
                bx(b, b"stbl", |b| {
                    full(b, b"stsd", 0, 0, |b| {
                        u32be(b, 1);
                        b.extend_from_slice(entry);
                    });
                    full(b, b"stts", 0, 0, |b| u32be(b, 0));
                    full(b, b"stsc", 0, 0, |b| u32be(b, 0));
                    full(b, b"stsz", 0, 0, |b| {
                        u32be(b, 0);
                        u32be(b, 0);
                    });
                    full(b, b"stco", 0, 0, |b| u32be(b, 0));
                });
            });
        });
    });
}

/// Sample flags: a sync sample depends on nothing; others depend on earlier samples
/// and are marked non-sync.
fn sample_flags(key: bool) -> u32 {
    if key { 0x0200_0000 } else { 0x0101_0000 }
}

/// A `moof` + `mdat` fragment holding one run per track (tracks without samples are
/// left out).
pub fn fragment(sequence: u32, runs: &[TrackRun<'_>]) -> Vec<u8> {
    let data_len: usize = runs
        .iter()
        .flat_map(|r| r.samples)
        .map(|s| s.data.len())
        .sum();
    let mut b = Vec::with_capacity(
        256 + data_len + runs.iter().map(|r| r.samples.len() * 12).sum::<usize>(),
    );
    let mut offset_slots = Vec::new();
    bx(&mut b, b"moof", |b| {
        full(b, b"mfhd", 0, 0, |b| u32be(b, sequence));
        for r in runs.iter().filter(|r| !r.samples.is_empty()) {
            bx(b, b"traf", |b| {
                // default-base-is-moof: data offsets are relative to this moof.
                full(b, b"tfhd", 0, 0x02_0000, |b| u32be(b, r.track_id));
                full(b, b"tfdt", 1, 0, |b| {
                    b.extend_from_slice(&r.base_dts.to_be_bytes())
                });
                // data-offset, sample-duration, sample-size, sample-flags present.
                full(b, b"trun", 0, 0x0701, |b| {
                    u32be(b, r.samples.len() as u32);
                    offset_slots.push(b.len());
                    u32be(b, 0); // data_offset, patched below
                    for s in r.samples {
                        u32be(b, s.duration);
                        u32be(b, s.data.len() as u32);
                        u32be(b, sample_flags(s.key));
                    }
                });
            });
        }
    });
    let moof_len = b.len();
    let mut data_pos = moof_len + 8;
    for (slot, r) in offset_slots
        .iter()
        .zip(runs.iter().filter(|r| !r.samples.is_empty()))
    {
        b[*slot..*slot + 4].copy_from_slice(&(data_pos as u32).to_be_bytes());
        data_pos += r.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    u32be(&mut b, (8 + data_len) as u32);
    b.extend_from_slice(b"mdat");
    for s in runs.iter().flat_map(|r| r.samples) {
        b.extend_from_slice(&s.data);
    }
    b
}

/// Renders a box tree as indented `type size` lines (for golden tests and debugging).
pub fn dump(data: &[u8]) -> String {
    fn walk(data: &[u8], depth: usize, out: &mut String) {
        let mut i = 0;
        while i + 8 <= data.len() {
            let size =
                u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
            let typ = String::from_utf8_lossy(&data[i + 4..i + 8]).into_owned();
            if size < 8 || i + size > data.len() {
                out.push_str(&format!("{}!bad box at {i}\n", "  ".repeat(depth)));
                return;
            }
            out.push_str(&format!("{}{typ} {size}\n", "  ".repeat(depth)));
            let body = &data[i + 8..i + size];
            match typ.as_str() {
                "moov" | "trak" | "mdia" | "minf" | "dinf" | "stbl" | "mvex" | "moof" | "traf" => {
                    walk(body, depth + 1, out)
                }
                "stsd" => walk(&body[8..], depth + 1, out),
                _ => {}
            }
            i += size;
        }
    }
    let mut out = String::new();
    walk(data, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tests::info;

    #[test]
    fn init_segment_golden() {
        let got = dump(&init_segment(&info()));
        // Sizes follow from the box layouts in ISO/IEC 14496-12; `dump` checks that
        // every child fits its parent. The stand-in sample entry is 4 bytes.
        let want = "\
ftyp 32
moov 501
  mvhd 108
  trak 345
    tkhd 92
    mdia 245
      mdhd 32
      hdlr 45
      minf 160
        vmhd 20
        dinf 36
          dref 28
        stbl 96
          stsd 20
          stts 16
          stsc 16
          stsz 20
          stco 16
  mvex 40
    trex 32
";
        assert_eq!(got, want);
    }

    #[test]
    fn fragment_offsets_point_into_mdat() {
        let v = [
            Sample {
                duration: 6000,
                key: true,
                data: Bytes::from_static(b"AAAA"),
            },
            Sample {
                duration: 6000,
                key: false,
                data: Bytes::from_static(b"BB"),
            },
        ];
        let a = [Sample {
            duration: 1024,
            key: true,
            data: Bytes::from_static(b"CCC"),
        }];
        let f = fragment(
            7,
            &[
                TrackRun {
                    track_id: VIDEO_TRACK,
                    base_dts: 90_000,
                    samples: &v,
                },
                TrackRun {
                    track_id: AUDIO_TRACK,
                    base_dts: 48_000,
                    samples: &a,
                },
            ],
        );
        assert_eq!(
            dump(&f),
            "moof 188\n  mfhd 16\n  traf 88\n    tfhd 16\n    tfdt 20\n    trun 44\n  traf 76\n    tfhd 16\n    tfdt 20\n    trun 32\nmdat 17\n"
        );
        // First trun's data offset: after moof and mdat header.
        let trun1 = f.windows(4).position(|w| w == b"trun").unwrap();
        let off1 = u32::from_be_bytes(f[trun1 + 12..trun1 + 16].try_into().unwrap()) as usize;
        assert_eq!(&f[off1..off1 + 6], b"AAAABB");
        let trun2 = trun1
            + 4
            + f[trun1 + 4..]
                .windows(4)
                .position(|w| w == b"trun")
                .unwrap();
        let off2 = u32::from_be_bytes(f[trun2 + 12..trun2 + 16].try_into().unwrap()) as usize;
        assert_eq!(&f[off2..off2 + 3], b"CCC");
        // Key flags.
        assert_eq!(&f[trun1 + 24..trun1 + 28], &0x0200_0000u32.to_be_bytes());
        assert_eq!(&f[trun1 + 36..trun1 + 40], &0x0101_0000u32.to_be_bytes());
    }
}
