/// Every GGUF metadata key the project writes or reads, written once (gguf-py `constants.py`,
/// class `Keys`). Architecture keys are templates: `GGUFKey.Model.blockCount.key("rwkv7")` is
/// `rwkv7.block_count`.
public enum GGUFKey {
    public static let architecture = "general.architecture"
    public static let type = "general.type"
    public static let name = "general.name"
    public static let alignment = "general.alignment"
    public static let fileType = "general.file_type"
    public static let quantizationVersion = "general.quantization_version"

    /// `{arch}.…` hyperparameters.
    public enum Model: String, CaseIterable, Sendable {
        case contextLength = "context_length"
        case embeddingLength = "embedding_length"
        case blockCount = "block_count"
        case feedForwardLength = "feed_forward_length"
        case headCount = "attention.head_count"
        case layerNormEpsilon = "attention.layer_norm_epsilon"
        case wkvHeadSize = "wkv.head_size"
        // RWKV-7
        case decayLoraRank = "attention.decay_lora_rank"
        case iclrLoraRank = "attention.iclr_lora_rank"
        case valueResidualMixLoraRank = "attention.value_residual_mix_lora_rank"
        case gateLoraRank = "attention.gate_lora_rank"
        // RWKV-6
        case timeMixExtraDim = "time_mix_extra_dim"
        case timeDecayExtraDim = "time_decay_extra_dim"
        case rescaleEveryNLayers = "rescale_every_n_layers"

        public func key(_ architecture: String) -> String { "\(architecture).\(rawValue)" }
    }

    public enum Tokenizer {
        public static let model = "tokenizer.ggml.model"
        public static let tokens = "tokenizer.ggml.tokens"
        public static let tokenType = "tokenizer.ggml.token_type"
        public static let bosID = "tokenizer.ggml.bos_token_id"
        public static let eosID = "tokenizer.ggml.eos_token_id"
        public static let eotID = "tokenizer.ggml.eot_token_id"
        public static let chatTemplate = "tokenizer.chat_template"
    }
}
