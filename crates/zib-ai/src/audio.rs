//! Whisper's input: 80-bin log-mel spectrogram of 16 kHz mono audio (25 ms windows,
//! 10 ms hop), with the mel filter bank computed here rather than shipped.
