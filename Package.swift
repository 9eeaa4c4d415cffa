// swift-tools-version:6.0
import PackageDescription

// Data flows one way: RWKVFormats reads and writes files (tensors in, tensors out),
// RWKVModel knows what an RWKV checkpoint is and runs it, RWKVConvert plans and performs
// conversions, RWKVVerify compares logits. The executables are thin argument-parser shells.
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
        // Half-float conversion kernels (and the AVX2 q8_0 quantizer): F16C turns f16<->f32 into one instruction per 8 values,
        // which Swift's Float16 does not use on a generic x86-64 target. The F16C functions are
        // chosen at run time (target attributes in chalf.c), so no -mf16c for the whole target:
        // it would let the compiler use AVX everywhere and crash on CPUs without it.
        .target(name: "CHalf", cSettings: [.unsafeFlags(["-O3"])]),

        // Checksums: SHA-256 compression (the source file's hash recorded in converted files)
        // and CRC-32 (every zip record read or written), SHA extensions / PCLMULQDQ chosen at run
        // time, portable C otherwise; -O3 keeps debug-built tests fast.
        .target(name: "CChecksums", cSettings: [.unsafeFlags(["-O3"])]),

        .target(name: "RWKVFormats", dependencies: ["CZip", "CHalf", "CChecksums"]),
        .target(name: "RWKVModel", dependencies: ["RWKVFormats", "COpenBLAS"]),
        .target(name: "RWKVConvert", dependencies: ["RWKVFormats", "RWKVModel"],
                resources: [.copy("Resources/rwkv_vocab_v20230424.txt")]),
        .target(name: "RWKVVerify", dependencies: ["RWKVFormats", "RWKVModel"]),

        .executableTarget(name: "rwkv-convert", dependencies: [
            "RWKVConvert", "RWKVModel", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "rwkv-upgrade", dependencies: [
            "RWKVConvert", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "rwkv-verify", dependencies: [
            "RWKVVerify", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .testTarget(name: "RWKVFormatsTests", dependencies: ["RWKVFormats"]),
        .testTarget(name: "RWKVModelTests", dependencies: ["RWKVModel"]),
        .testTarget(name: "RWKVConvertTests", dependencies: ["RWKVConvert"]),
        .testTarget(name: "RWKVVerifyTests", dependencies: ["RWKVVerify"]),
    ]
)
