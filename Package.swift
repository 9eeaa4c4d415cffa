// swift-tools-version:6.0
import PackageDescription

// Data flows one way: RWKVFormats reads and writes files (tensors in, tensors out), RWKVModel
// knows what an RWKV checkpoint is and runs it, RWKVText holds the World vocabulary, tokenizer and
// text chunks, RWKVConvert plans and performs conversions, RWKVUpgrade builds newer-architecture
// checkpoints from older ones, RWKVVerify compares logits and measures quality on text. Each is a
// library product another package can depend on (README, "Use as a library"; Examples/).
// RWKVCommandLine is the programs' shared shell (exit statuses, error line, JSON, progress bar);
// the executables are thin argument-parser shells.
//
// No target sets compiler flags (SwiftPM refuses unsafe flags in a dependency): `make test` builds
// the suite optimised (-Xswiftc -O -Xcc -O3, Makefile), as the k-quant search and the C kernels
// run about 10x slower unoptimised.
let package = Package(
    name: "rwkv-tools",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "RWKVFormats", targets: ["RWKVFormats"]),
        .library(name: "RWKVModel", targets: ["RWKVModel"]),
        .library(name: "RWKVText", targets: ["RWKVText"]),
        .library(name: "RWKVConvert", targets: ["RWKVConvert"]),
        .library(name: "RWKVUpgrade", targets: ["RWKVUpgrade"]),
        .library(name: "RWKVVerify", targets: ["RWKVVerify"]),
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
        // AVX everywhere and crash on CPUs without it.
        .target(name: "CKernels"),

        .target(name: "RWKVFormats", dependencies: ["CZip", "CKernels"]),
        .target(name: "RWKVModel", dependencies: ["RWKVFormats", "COpenBLAS"]),
        // The text side: World vocabulary and tokenizer, text chunks (conversion, upgrade and
        // verification all read text; none of them needs another's code for it).
        .target(name: "RWKVText", dependencies: ["RWKVFormats"],
                resources: [.copy("Resources/rwkv_vocab_v20230424.txt")]),
        .target(name: "RWKVConvert", dependencies: ["RWKVFormats", "RWKVModel", "RWKVText"]),
        .target(name: "RWKVUpgrade", dependencies: ["RWKVFormats", "RWKVModel", "RWKVText", "COpenBLAS"]),
        .target(name: "RWKVVerify", dependencies: ["RWKVFormats", "RWKVModel", "RWKVText"]),
        // What the three programs share: exit statuses, the one-line error, JSON, the progress bar.
        .target(name: "RWKVCommandLine", dependencies: [
            "RWKVFormats", "RWKVModel", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .executableTarget(name: "rwkv-convert", dependencies: [
            "RWKVConvert", "RWKVModel", "RWKVText", "RWKVCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "rwkv-upgrade", dependencies: [
            "RWKVUpgrade", "RWKVModel", "RWKVCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "rwkv-verify", dependencies: [
            "RWKVVerify", "RWKVText", "RWKVCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Not a product: the upgrade's experiment settings, for the measuring scripts only.
        .executableTarget(name: "upgrade-lab", dependencies: [
            "RWKVUpgrade", "RWKVModel", "RWKVCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .testTarget(name: "RWKVFormatsTests", dependencies: ["RWKVFormats"]),
        .testTarget(name: "RWKVModelTests", dependencies: ["RWKVModel"]),
        .testTarget(name: "RWKVTextTests", dependencies: ["RWKVText"]),
        // The hostile-file tests check that the upgrade refuses bad checkpoints as conversion does.
        .testTarget(name: "RWKVConvertTests", dependencies: ["RWKVConvert", "RWKVText", "RWKVUpgrade"]),
        .testTarget(name: "RWKVUpgradeTests", dependencies: ["RWKVUpgrade"]),
        .testTarget(name: "RWKVVerifyTests", dependencies: ["RWKVVerify", "RWKVText", "RWKVCommandLine"]),
        // The programs' shared shell, and the --json schemas of all three (docs/json.md).
        .testTarget(name: "RWKVCommandLineTests", dependencies: [
            "RWKVCommandLine", "RWKVConvert", "RWKVText", "RWKVUpgrade", "RWKVVerify"]),
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
