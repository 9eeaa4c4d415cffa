// swift-tools-version:6.0
import PackageDescription

// Data flows one way: RWKVFormats reads and writes files (tensors in, tensors out),
// RWKVModel knows what an RWKV checkpoint is and runs it, RWKVConvert plans and performs
// conversions (and holds the tokenizer and text chunks), RWKVUpgrade builds RWKV-7 checkpoints
// from RWKV-6 ones (it reads the tokenizer from RWKVConvert for --calibrate; RWKVConvert does not
// know it), RWKVVerify compares logits and measures quality on text, RWKVCommandLine is the programs' shared shell (exit statuses, error
// line, JSON, progress bar). The executables are thin argument-parser shells.
let package = Package(
    name: "rwkv-tools",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "rwkv-convert", targets: ["rwkv-convert"]),
        .executable(name: "rwkv-upgrade", targets: ["rwkv-upgrade"]),
        .executable(name: "rwkv-verify", targets: ["rwkv-verify"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "CZip", pkgConfig: "libzip", providers: [.apt(["libzip-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // The few loops that need CPU instructions Swift does not reach on a generic x86-64
        // target: half floats (F16C), the q8_0 quantizer (AVX2), SHA-256 (SHA extensions) and
        // CRC-32 (PCLMULQDQ). Each is chosen at run time (target attributes, CPUID), with portable
        // code otherwise, so no -m flags for the whole target: they would let the compiler use
        // AVX everywhere and crash on CPUs without it. -O3 keeps debug-built tests fast.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),

        // Optimised in debug builds too, as CKernels: the k-quant quantizers compare 8 scales side by
        // side in SIMD lanes, which unoptimised Swift runs ~10x slower than plain code.
        .target(name: "RWKVFormats", dependencies: ["CZip", "CKernels"], swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "RWKVModel", dependencies: ["RWKVFormats", "COpenBLAS"]),
        .target(name: "RWKVConvert", dependencies: ["RWKVFormats", "RWKVModel"],
                resources: [.copy("Resources/rwkv_vocab_v20230424.txt")]),
        .target(name: "RWKVUpgrade", dependencies: ["RWKVFormats", "RWKVModel", "RWKVConvert", "COpenBLAS"]),
        .target(name: "RWKVVerify", dependencies: ["RWKVFormats", "RWKVModel", "RWKVConvert"]),
        // What the three programs share: exit statuses, the one-line error, JSON, the progress bar.
        .target(name: "RWKVCommandLine", dependencies: [
            "RWKVFormats", "RWKVModel", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .executableTarget(name: "rwkv-convert", dependencies: [
            "RWKVConvert", "RWKVModel", "RWKVCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "rwkv-upgrade", dependencies: [
            "RWKVUpgrade", "RWKVModel", "RWKVCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "rwkv-verify", dependencies: [
            "RWKVVerify", "RWKVConvert", "RWKVCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Not a product: the upgrade's experiment settings, for the measuring scripts only.
        .executableTarget(name: "upgrade-lab", dependencies: [
            "RWKVUpgrade", "RWKVModel", "RWKVCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .testTarget(name: "RWKVFormatsTests", dependencies: ["RWKVFormats"]),
        .testTarget(name: "RWKVModelTests", dependencies: ["RWKVModel"]),
        // The hostile-file tests check that the upgrade refuses bad checkpoints as conversion does.
        .testTarget(name: "RWKVConvertTests", dependencies: ["RWKVConvert", "RWKVUpgrade"]),
        .testTarget(name: "RWKVUpgradeTests", dependencies: ["RWKVUpgrade"]),
        .testTarget(name: "RWKVVerifyTests", dependencies: ["RWKVVerify", "RWKVCommandLine"]),
        .testTarget(name: "RWKVCommandLineTests", dependencies: ["RWKVCommandLine"]),
    ]
)

// libFuzzer targets, only when asked for (`make fuzz` sets RWKV_FUZZ=1 and builds with
// -sanitize=fuzzer in its own scratch path): the entry point has no main of its own.
if Context.environment["RWKV_FUZZ"] != nil {
    package.targets.append(.executableTarget(
        name: "rwkv-fuzz", dependencies: ["RWKVFormats", "RWKVModel", "RWKVConvert"], path: "Fuzz/rwkv-fuzz",
        swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    package.products.append(.executable(name: "rwkv-fuzz", targets: ["rwkv-fuzz"]))
}
