//! Sentence embeddings with all-MiniLM-L6-v2 (candle-transformers' BERT, safetensors
//! weights, a WordPiece tokenizer over `vocab.txt`), mean-pooled and L2-normalised.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use crate::AiError;

/// all-MiniLM-L6-v2 was trained on sequences of at most 256 tokens ([CLS] and [SEP]
/// included); longer texts are cut there, as sentence-transformers does.
pub const MAX_TOKENS: usize = 256;
/// Texts embedded per forward pass: bounds the padded batch's memory.
const BATCH: usize = 16;
/// BERT's WordPiece gives up on longer words (they become `[UNK]`).
const MAX_WORD_CHARS: usize = 100;

pub struct Embedder {
    name: String,
    model: BertModel,
    tokenizer: WordPiece,
    dims: usize,
    /// Vectors of fixed label sets (the IAB categories), embedded once per model.
    cache: Mutex<HashMap<&'static str, Arc<Vec<Vec<f32>>>>>,
}

impl Embedder {
    /// Loads `model.safetensors`, `config.json` and `vocab.txt` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, AiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| AiError::Io { path, source })
        };
        let bad = |name: &str, reason: String| AiError::BadModel {
            path: dir.join(name),
            reason,
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| bad("config.json", e.to_string()))?;
        let vocab =
            String::from_utf8(read("vocab.txt")?).map_err(|e| bad("vocab.txt", e.to_string()))?;
        let tokenizer = WordPiece::new(&vocab).map_err(|reason| bad("vocab.txt", reason))?;
        if tokenizer.len() > config.vocab_size {
            return Err(bad(
                "vocab.txt",
                format!(
                    "{} entries, the model knows {}",
                    tokenizer.len(),
                    config.vocab_size
                ),
            ));
        }
        if config.max_position_embeddings < MAX_TOKENS {
            return Err(bad(
                "config.json",
                format!(
                    "max_position_embeddings {} < {MAX_TOKENS}",
                    config.max_position_embeddings
                ),
            ));
        }
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| bad("model.safetensors", e.to_string()))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| bad("model.safetensors", e.to_string()))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "minilm".into());
        Ok(Self {
            name,
            model,
            tokenizer,
            dims: config.hidden_size,
            cache: Mutex::default(),
        })
    }

    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// The length of every vector [`Embedder::embed`] returns (384 for MiniLM).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// One unit-length 384-float vector per text (texts past 256 tokens are cut). A
    /// text with no tokens (empty, only spaces) still gets a vector: [CLS] [SEP]'s.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, AiError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            out.extend(self.embed_batch(batch)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, AiError> {
        let encoded: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenizer.encode(t, MAX_TOKENS))
            .collect();
        let width = encoded.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(texts.len() * width);
        let mut mask = Vec::with_capacity(texts.len() * width);
        for row in &encoded {
            ids.extend(row.iter().copied());
            ids.extend(std::iter::repeat_n(self.tokenizer.pad, width - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, width - row.len()));
        }
        let device = &self.model.device;
        let shape = (encoded.len(), width);
        let ids = Tensor::from_vec(ids, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens only, then unit length.
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?;
        let counts = maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        let unit = mean.broadcast_div(&norms)?;
        Ok(unit.to_vec2::<f32>()?)
    }

    /// The vectors stored under `key`, made by `make` the first time. Two threads
    /// asking at once may both compute them; either result is kept.
    pub(crate) fn cached(
        &self,
        key: &'static str,
        make: impl FnOnce() -> Result<Vec<Vec<f32>>, AiError>,
    ) -> Result<Arc<Vec<Vec<f32>>>, AiError> {
        let lock = || {
            self.cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if let Some(v) = lock().get(key) {
            return Ok(v.clone());
        }
        let made = Arc::new(make()?);
        Ok(lock().entry(key).or_insert(made).clone())
    }

    /// The WordPiece ids of `text` with [CLS] and [SEP], cut to `max` ids: what the
    /// model sees (exposed for tests and token budgets).
    pub fn token_ids(&self, text: &str, max: usize) -> Vec<u32> {
        self.tokenizer.encode(text, max)
    }

    /// The vocabulary entry of an id, if any.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokenizer.tokens.get(id as usize).map(String::as_str)
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// BERT's uncased tokenizer: basic tokenization (clean, lowercase, strip accents,
/// split on whitespace, punctuation and CJK characters), then greedy
/// longest-match-first WordPiece with `##` continuations.
struct WordPiece {
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
    cls: u32,
    sep: u32,
    unk: u32,
    pad: u32,
}

impl WordPiece {
    fn new(vocab: &str) -> Result<Self, String> {
        let tokens: Vec<String> = vocab.lines().map(|l| l.trim_end().to_string()).collect();
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let special = |t: &str| ids.get(t).copied().ok_or(format!("no {t} token"));
        Ok(Self {
            cls: special("[CLS]")?,
            sep: special("[SEP]")?,
            unk: special("[UNK]")?,
            pad: special("[PAD]")?,
            ids,
            tokens,
        })
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }

    /// `[CLS] pieces… [SEP]`, at most `max` ids (at least the two specials).
    fn encode(&self, text: &str, max: usize) -> Vec<u32> {
        let room = max.saturating_sub(2);
        let mut out = vec![self.cls];
        'words: for word in basic_tokenize(text) {
            for id in self.word_pieces(&word) {
                if out.len() > room {
                    break 'words;
                }
                out.push(id);
            }
        }
        out.push(self.sep);
        out
    }

    fn word_pieces(&self, word: &str) -> Vec<u32> {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_WORD_CHARS {
            return vec![self.unk];
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let mut piece: String = chars[start..end].iter().collect();
                if start > 0 {
                    piece.insert_str(0, "##");
                }
                if let Some(&id) = self.ids.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => pieces.push(id),
                None => return vec![self.unk],
            }
            start = end;
        }
        pieces
    }
}

/// BERT's BasicTokenizer (uncased): the words and punctuation marks of `text`.
fn basic_tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
    };
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
            continue;
        }
        if c.is_whitespace() {
            flush(&mut word, &mut words);
            continue;
        }
        if is_punctuation(c) || is_cjk(c) {
            flush(&mut word, &mut words);
            words.push(c.to_string());
            continue;
        }
        for lower in c.to_lowercase() {
            if let Some(base) = strip_accent(lower) {
                word.push(base);
            } else if !is_combining_mark(lower) {
                word.push(lower);
            }
        }
    }
    flush(&mut word, &mut words);
    words
}

/// BERT counts every non-alphanumeric ASCII symbol as punctuation, plus Unicode's.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(c,
        '\u{a1}' | '\u{a7}' | '\u{ab}' | '\u{b6}' | '\u{b7}' | '\u{bb}' | '\u{bf}'
        | '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205e}'
        | '\u{3001}'..='\u{3003}' | '\u{3008}'..='\u{3011}' | '\u{3014}'..='\u{301f}'
        | '\u{ff01}'..='\u{ff0f}' | '\u{ff1a}'..='\u{ff20}' | '\u{ff3b}'..='\u{ff40}'
        | '\u{ff5b}'..='\u{ff65}')
}

/// The CJK ideograph blocks BERT splits character by character.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{4e00}'..='\u{9fff}' | '\u{3400}'..='\u{4dbf}' | '\u{20000}'..='\u{2a6df}'
        | '\u{2a700}'..='\u{2b73f}' | '\u{2b740}'..='\u{2b81f}' | '\u{2b820}'..='\u{2ceaf}'
        | '\u{f900}'..='\u{faff}' | '\u{2f800}'..='\u{2fa1f}')
}

/// Combining diacritics, which NFD + strip-accents drops.
fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36f}' | '\u{1ab0}'..='\u{1aff}' | '\u{1dc0}'..='\u{1dff}' | '\u{20d0}'..='\u{20ff}' | '\u{fe20}'..='\u{fe2f}')
}

/// The unaccented letter of a lowercase Latin-1 / Latin Extended-A letter (what NFD
/// followed by dropping the marks gives), `None` when `c` has no accent to strip.
fn strip_accent(c: char) -> Option<char> {
    let base = match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => 'c',
        'ď' => 'd',
        'è'..='ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => 'e',
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => 'g',
        'ĥ' => 'h',
        'ì'..='ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' => 'i',
        'ĵ' => 'j',
        'ķ' => 'k',
        'ĺ' | 'ļ' | 'ľ' => 'l',
        'ñ' | 'ń' | 'ņ' | 'ň' => 'n',
        'ò'..='ö' | 'ō' | 'ŏ' | 'ő' => 'o',
        'ŕ' | 'ŗ' | 'ř' => 'r',
        'ś' | 'ŝ' | 'ş' | 'š' => 's',
        'ţ' | 'ť' => 't',
        'ù'..='ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => 'u',
        'ŵ' => 'w',
        'ý' | 'ÿ' | 'ŷ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        _ => return None,
    };
    Some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> WordPiece {
        let v = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nun\n##aff\n##able\nhello\n,\ncafe\n!\n";
        WordPiece::new(v).unwrap()
    }

    #[test]
    fn basic_tokenization_lowercases_strips_accents_and_splits_punctuation() {
        assert_eq!(
            basic_tokenize("  Hello,Café!\tÜber\u{301}  "),
            vec!["hello", ",", "cafe", "!", "uber"]
        );
        assert!(basic_tokenize(" \n ").is_empty());
    }

    #[test]
    fn wordpiece_is_greedy_longest_match_first() {
        let wp = vocab();
        assert_eq!(wp.encode("Unaffable hello", 256), vec![2, 4, 5, 6, 7, 3]);
        // A word with a piece the vocabulary lacks is [UNK] as a whole.
        assert_eq!(wp.encode("unaffx", 256), vec![2, 1, 3]);
        // Cut to the budget, [SEP] kept.
        assert_eq!(wp.encode("hello hello hello", 4), vec![2, 7, 7, 3]);
        assert_eq!(wp.encode("", 256), vec![2, 3]);
    }
}
