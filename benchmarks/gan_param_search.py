"""Search the layer combinations that reproduce seed 002's per-block parameter counts (no torch needed).

    python benchmarks/gan_param_search.py

Each block is a stack of convolutions; a combination is (kernel, in-channels, bias, norm). The seed lists
counts only, so every combination that hits a count exactly is printed; genfill.models.gan builds the ones
marked by the search as unique or, where several fit, the plainest (all 3x3 convs with bias, no norm).
"""

from __future__ import annotations

import itertools

SEED = {"enc1": 39_296, "enc2": 221_440, "enc3": 885_248, "attention": 82_241, "bottleneck": 1_180_160,
        "dec3": 1_769_984, "dec2": 590_080, "dec1": 112_387, "discriminator": 35_553}


def conv(cin: int, cout: int, k: int = 3, bias: bool = True, bn: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0) + (2 * cout if bn else 0)


def two_convs(cin: int, mid: int, cout: int, k: int = 3, bias: bool = True, bn: bool = False) -> int:
    return conv(cin, mid, k, bias, bn) + conv(mid, cout, k, bias, bn)


def attention(c: int, div: int = 8) -> int:
    q = c // div
    return 2 * (c * q + q) + c * c + c + 1  # query, key (C -> C/8), value (C -> C), gamma


def search() -> None:
    b = 64
    found: dict[str, list[str]] = {k: [] for k in SEED}
    for bias, bn in itertools.product((True, False), repeat=2):
        tag = f"bias={bias} bn={bn}"
        for cin in (3, 4):
            if two_convs(cin, b, b, bias=bias, bn=bn) == SEED["enc1"]:
                found["enc1"].append(f"2 x conv3x3 {cin}->{b}->{b} {tag}")
            if conv(cin, b, bias=bias, bn=bn) == SEED["enc1"]:
                found["enc1"].append(f"1 x conv3x3 {cin}->{b} {tag}")
        if two_convs(b, 2 * b, 2 * b, bias=bias, bn=bn) == SEED["enc2"]:
            found["enc2"].append(f"2 x conv3x3 {b}->{2 * b}->{2 * b} {tag}")
        if two_convs(2 * b, 4 * b, 4 * b, bias=bias, bn=bn) == SEED["enc3"]:
            found["enc3"].append(f"2 x conv3x3 {2 * b}->{4 * b}->{4 * b} {tag}")
        for cout in (4 * b, 8 * b):
            if conv(4 * b, cout, bias=bias, bn=bn) == SEED["bottleneck"]:
                found["bottleneck"].append(f"1 x conv3x3 {4 * b}->{cout} {tag}")
            if two_convs(4 * b, cout, cout, bias=bias, bn=bn) == SEED["bottleneck"]:
                found["bottleneck"].append(f"2 x conv3x3 {4 * b}->{cout}->{cout} {tag}")
        for up in (4 * b, 8 * b):  # channels coming up from the bottleneck into dec3 (+ skip from enc3)
            if two_convs(up + 4 * b, 4 * b, 4 * b, bias=bias, bn=bn) == SEED["dec3"]:
                found["dec3"].append(f"2 x conv3x3 ({up}+{4 * b})->{4 * b}->{4 * b} {tag}")
        for up in (2 * b, 4 * b):
            if two_convs(up + 2 * b, 2 * b, 2 * b, bias=bias, bn=bn) == SEED["dec2"]:
                found["dec2"].append(f"2 x conv3x3 ({up}+{2 * b})->{2 * b}->{2 * b} {tag}")
        for up in (b, 2 * b):
            for last_k in (1, 3):
                n = conv(up + b, b, bias=bias, bn=bn) + conv(b, 3, last_k)
                if n == SEED["dec1"]:
                    found["dec1"].append(f"conv3x3 ({up}+{b})->{b} {tag}, conv{last_k}x{last_k} {b}->3")
    for div in (4, 8, 16):
        for c in (128, 256, 512):
            if attention(c, div) == SEED["attention"]:
                found["attention"].append(f"SAGAN at C={c}, q/k dim C/{div}, value C, gamma")
    # PatchGAN: convs k4 from 3 (or 4 with a mask channel) channels, base 32, a BN on some layers.
    for cin, depth in itertools.product((3, 4), (2, 3)):
        chans = [cin] + [32 * 2**i for i in range(depth)]
        for bn_layers in itertools.product((False, True), repeat=depth):
            n = sum(conv(chans[i], chans[i + 1], 4, True, bn_layers[i]) for i in range(depth)) + conv(chans[-1], 1, 4)
            if n == SEED["discriminator"]:
                found["discriminator"].append(f"k4 convs {'->'.join(map(str, chans))}->1, BN after layer(s) "
                                              f"{[i + 1 for i, v in enumerate(bn_layers) if v]}")
    for name, hits in found.items():
        print(f"{name:13s} seed {SEED[name]:>9,}: " + ("; ".join(hits) if hits else "NO MATCH"))


if __name__ == "__main__":
    search()
