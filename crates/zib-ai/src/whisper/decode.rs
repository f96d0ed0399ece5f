//! Whisper's tokens: the vocabulary (`vocabulary.txt`, one byte-level BPE token per
//! line, id = line number), the logit filters of greedy decoding with timestamps, and
//! the decoded tokens turned into timed segments.

use std::collections::HashMap;
use std::path::Path;

use crate::AiError;

/// Seconds per timestamp token step.
const TIME_PRECISION: f64 = 0.02;
/// OpenAI's `max_initial_timestamp`: the first timestamp is at most 1 s in.
const MAX_INITIAL_TIMESTAMP_INDEX: usize = 50;

/// What the decoder produced for one window.
pub(super) struct Decoded {
    /// Sampled tokens, without the prompt and the end-of-text.
    pub tokens: Vec<u32>,
    pub avg_logprob: f32,
    /// The probability of `<|nocaptions|>` right after the start token.
    pub no_speech_prob: f32,
}

/// The token table and the special tokens decoding needs.
pub(super) struct Vocabulary {
    /// Each token's bytes (empty for special tokens).
    bytes: Vec<Vec<u8>>,
    pub eot: u32,
    sot: u32,
    /// `<|en|>` on a multilingual model; `None` on an English-only one.
    english: Option<u32>,
    transcribe: Option<u32>,
    no_timestamps: u32,
    pub no_speech: Option<u32>,
    timestamp_begin: u32,
    /// Never sampled (config.json `suppress_ids`).
    suppress: Vec<u32>,
    /// Not sampled first (config.json `suppress_ids_begin`: the blank and end-of-text).
    suppress_begin: Vec<u32>,
}

#[derive(serde::Deserialize, Default)]
struct Ct2Config {
    #[serde(default)]
    suppress_ids: Vec<u32>,
    #[serde(default)]
    suppress_ids_begin: Vec<u32>,
}

impl Vocabulary {
    /// Reads `vocabulary.txt` (and the suppress lists of `config.json`) from `dir`;
    /// `size` is the model's embedding count, which the vocabulary must match.
    pub fn load(dir: &Path, size: usize) -> Result<Self, AiError> {
        let path = dir.join("vocabulary.txt");
        let text = std::fs::read_to_string(&path).map_err(|source| AiError::Io {
            path: path.clone(),
            source,
        })?;
        let tokens: Vec<&str> = text
            .strip_suffix('\n')
            .unwrap_or(&text)
            .split('\n')
            .collect();
        let config_path = dir.join("config.json");
        let config = match std::fs::read(&config_path) {
            Ok(raw) => serde_json::from_slice(&raw).map_err(|e| AiError::BadModel {
                path: config_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ct2Config::default(),
            Err(source) => {
                return Err(AiError::Io {
                    path: config_path,
                    source,
                })
            }
        };
        Self::new(&tokens, size, config).map_err(|reason| AiError::BadModel { path, reason })
    }

    fn new(tokens: &[&str], size: usize, config: Ct2Config) -> Result<Self, String> {
        if tokens.len() != size {
            return Err(format!(
                "{} tokens for a model of {size} embeddings",
                tokens.len()
            ));
        }
        let ids: HashMap<&str, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i as u32))
            .collect();
        let find = |t: &str| ids.get(t).copied();
        let need = |t: &str| find(t).ok_or_else(|| format!("no {t} token"));
        let eot = need("<|endoftext|>")?;
        let timestamp_begin = need("<|0.00|>")?;
        // Whisper's own test: the multilingual vocabulary has 51865 tokens or more.
        let multilingual = size >= 51_865;
        let decoder = byte_decoder();
        let bytes = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i as u32 >= eot {
                    return Vec::new();
                }
                t.chars()
                    .map(|c| decoder.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .unwrap_or_else(|| t.as_bytes().to_vec())
            })
            .collect();
        let limit = |ids: Vec<u32>| -> Vec<u32> {
            ids.into_iter().filter(|id| (*id as usize) < size).collect()
        };
        let mut suppress_begin = limit(config.suppress_ids_begin);
        if suppress_begin.is_empty() {
            suppress_begin = find("Ġ").into_iter().chain([eot]).collect();
        }
        Ok(Self {
            bytes,
            eot,
            sot: need("<|startoftranscript|>")?,
            english: if multilingual {
                Some(need("<|en|>")?)
            } else {
                None
            },
            transcribe: if multilingual {
                find("<|transcribe|>")
            } else {
                None
            },
            no_timestamps: need("<|notimestamps|>")?,
            no_speech: find("<|nocaptions|>").or_else(|| find("<|nospeech|>")),
            timestamp_begin,
            suppress: limit(config.suppress_ids),
            suppress_begin,
        })
    }

    /// `<|startoftranscript|>` (then `<|en|><|transcribe|>` on a multilingual model).
    pub fn prompt(&self) -> Vec<u32> {
        [Some(self.sot), self.english, self.transcribe]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The text of `tokens` (special and timestamp tokens contribute nothing).
    pub fn text(&self, tokens: &[u32]) -> String {
        let bytes: Vec<u8> = tokens
            .iter()
            .filter_map(|t| self.bytes.get(*t as usize))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn timestamp(&self, token: u32) -> Option<f64> {
        (token >= self.timestamp_begin)
            .then(|| f64::from(token - self.timestamp_begin) * TIME_PRECISION)
    }

    /// OpenAI's logit filters for the next token after `sampled`: suppressed tokens,
    /// no blank first, and the timestamp rules.
    pub fn filter(&self, logits: &mut [f32], sampled: &[u32]) {
        let len = logits.len();
        let mut block = |range: std::ops::Range<usize>| {
            let range = range.start.min(len)..range.end.min(len);
            logits[range].fill(f32::NEG_INFINITY);
        };
        let one = |id: u32| id as usize..id as usize + 1;
        for &id in &self.suppress {
            block(one(id));
        }
        if sampled.is_empty() {
            for &id in &self.suppress_begin {
                block(one(id));
            }
        }
        block(one(self.no_timestamps));
        let tb = self.timestamp_begin as usize;
        let is_ts = |t: &u32| *t >= self.timestamp_begin;
        let last_ts = sampled.last().is_some_and(is_ts);
        let penultimate_ts = sampled.len() < 2 || is_ts(&sampled[sampled.len() - 2]);
        if last_ts {
            if penultimate_ts {
                // A pair just closed and opened: text must follow.
                block(tb..len);
            } else {
                // A segment just closed: a timestamp (or the end) must follow.
                block(0..self.eot as usize);
            }
        }
        if let Some(&last) = sampled.iter().rev().find(|t| is_ts(t)) {
            // Timestamps never go back; a closing one may be repeated as the next opening.
            let upto = if last_ts && !penultimate_ts {
                last as usize
            } else {
                last as usize + 1
            };
            block(tb..upto);
        }
        if sampled.is_empty() {
            block(0..tb);
            block(tb + MAX_INITIAL_TIMESTAMP_INDEX + 1..len);
        }
        // A timestamp when all timestamps together are likelier than any text token.
        if tb < len {
            let log_probs = log_softmax(logits);
            let ts_mass = log_sum_exp(&log_probs[tb..]);
            let best_text = log_probs[..tb]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            if ts_mass > best_text {
                logits[..tb].fill(f32::NEG_INFINITY);
            }
        }
    }
}

/// The likeliest token and its log-probability; `None` when every token is blocked.
pub(super) fn greedy(logits: &[f32]) -> Option<(u32, f32)> {
    let (best, &max) = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    let log_norm = log_sum_exp(logits);
    Some((best as u32, max - log_norm))
}

fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f32::NEG_INFINITY;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
}

fn log_softmax(values: &[f32]) -> Vec<f32> {
    let norm = log_sum_exp(values);
    values.iter().map(|v| v - norm).collect()
}

/// Segments read from a window's tokens; times relative to the window.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Parsed {
    /// (start, end, text) of every segment closed by a timestamp.
    pub complete: Vec<(f64, f64, String)>,
    /// Text after the last timestamp (cut by the end of decoding), with its start.
    pub unfinished: Option<(f64, String)>,
    /// The end of the last complete segment.
    pub last_end: Option<f64>,
}

/// `<|t0|> text <|t1|><|t1|> text <|t2|> …` → segments.
pub(super) fn segments(tokens: &[u32], vocab: &Vocabulary) -> Parsed {
    let mut out = Parsed::default();
    let mut start: Option<f64> = None;
    let mut text: Vec<u32> = Vec::new();
    for &token in tokens {
        if let Some(t) = vocab.timestamp(token) {
            if text.is_empty() {
                start = Some(t);
            } else {
                let s = start.or(out.last_end).unwrap_or(0.0);
                out.complete.push((s, t.max(s), vocab.text(&text)));
                text.clear();
                start = None;
                out.last_end = Some(t.max(s));
            }
        } else if token < vocab.eot {
            text.push(token);
        }
    }
    if !text.is_empty() {
        let s = start.or(out.last_end).unwrap_or(0.0);
        out.unfinished = Some((s, vocab.text(&text)));
    }
    out
}

/// GPT-2's byte-level alphabet, reversed: the printable character that stands for
/// each byte in a token's spelling → the byte.
fn byte_decoder() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(u32::from('¡')..=u32::from('¬'))
        .chain(u32::from('®')..=u32::from('ÿ'))
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, u8::try_from(b).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary laid out like Whisper's: text, then specials, then timestamps.
    fn vocab() -> Vocabulary {
        let mut tokens: Vec<String> = ["Hello", "Ġworld", "!", "Ġ", "Ã©", "Ċ"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for s in [
            "<|endoftext|>",
            "<|startoftranscript|>",
            "<|en|>",
            "<|translate|>",
            "<|transcribe|>",
            "<|startoflm|>",
            "<|startofprev|>",
            "<|nocaptions|>",
            "<|notimestamps|>",
        ] {
            tokens.push(s.into());
        }
        for i in 0..=1500 {
            tokens.push(format!("<|{:.2}|>", i as f64 * 0.02));
        }
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        Vocabulary::new(&refs, refs.len(), Ct2Config::default()).expect("vocabulary")
    }

    #[test]
    fn decodes_byte_level_tokens() {
        let v = vocab();
        assert_eq!(v.text(&[0, 1, 2]), "Hello world!");
        assert_eq!(v.text(&[4, 5]), "é\n");
        // Specials and timestamps add nothing.
        assert_eq!(v.text(&[6, 7, 20, 0]), "Hello");
        assert_eq!(v.prompt(), vec![7]);
        assert_eq!(v.no_speech, Some(13));
    }

    #[test]
    fn wrong_vocabulary_size_is_refused() {
        let tokens = ["a", "<|endoftext|>"];
        assert!(Vocabulary::new(&tokens, 3, Ct2Config::default()).is_err());
        assert!(Vocabulary::new(&tokens, 2, Ct2Config::default()).is_err());
    }

    #[test]
    fn timestamps_come_in_pairs_and_never_go_back() {
        let v = vocab();
        let tb = v.timestamp_begin;
        let n = tb as usize + 1501;
        let flat = |sampled: &[u32]| {
            let mut l = vec![0f32; n];
            // The end of text likelier than all timestamps together.
            l[v.eot as usize] = 10.0;
            v.filter(&mut l, sampled);
            l
        };
        // First token: a timestamp within 1 s.
        let l = flat(&[]);
        assert!(l[..tb as usize].iter().all(|x| x.is_infinite()));
        assert!(l[tb as usize + 50].is_finite());
        assert!(l[tb as usize + 51].is_infinite());
        // After an opening timestamp: no timestamp of the pair yet… text.
        let l = flat(&[tb + 10]);
        assert!(l[tb as usize..].iter().all(|x| x.is_infinite()));
        assert!(l[0].is_finite());
        // After text closed by a timestamp: a timestamp no earlier, or the end.
        let l = flat(&[tb + 10, 0, tb + 40]);
        assert!(l[0].is_infinite());
        assert!(l[v.eot as usize].is_finite());
        assert!(l[tb as usize + 39].is_infinite());
        assert!(l[tb as usize + 40].is_finite());
        // Inside a segment: text or a later timestamp.
        let l = flat(&[tb + 10, 0]);
        assert!(l[tb as usize + 10].is_infinite());
        assert!(l[tb as usize + 11].is_finite());
        // Never the no-timestamps token nor a suppressed special.
        assert!(l[v.no_timestamps as usize].is_infinite());
    }

    #[test]
    fn greedy_picks_the_best_finite_logit() {
        assert_eq!(greedy(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), None);
        let (t, lp) = greedy(&[0.0, 2.0, f32::NEG_INFINITY]).expect("a token");
        assert_eq!(t, 1);
        assert!((lp - (2.0 - (1.0f32 + 2.0f32.exp()).ln())).abs() < 1e-5);
    }

    #[test]
    fn tokens_become_segments() {
        let v = vocab();
        let tb = v.timestamp_begin;
        let p = segments(&[tb, 0, 1, tb + 50, tb + 60, 2, tb + 100], &v);
        assert_eq!(
            p.complete,
            vec![
                (0.0, 1.0, "Hello world".to_string()),
                (1.2, 2.0, "!".to_string())
            ]
        );
        assert_eq!(p.unfinished, None);
        assert_eq!(p.last_end, Some(2.0));
        let p = segments(&[tb, 0, tb + 50, tb + 60, 1], &v);
        assert_eq!(p.unfinished, Some((1.2, " world".to_string())));
        assert_eq!(p.last_end, Some(1.0));
        assert_eq!(segments(&[], &v), Parsed::default());
    }
}
