"""CPU experiment (numpy): accuracy of two ways to invert the 16x16 diagonal blocks of I + A, the first
stage of the prep's inverse, against float64 -- forward substitution (the kernels' way, 15 dependent
products) and the product form (I - A)(I + A^2)(I + A^4)(I + A^8) (about 4 dependent steps, which
would shorten the latency-bound inverse kernel). Products in fp32 or with operands rounded to tf32 (10
mantissa bits, as the tensor cores take them for 16-bit inputs). Keys random or aligned (one shared
direction, beta ~ 0.5, slow decay: the regime of converted layers).

    python benchmarks/inverse_forms_cpu.py

Round 7 (kernels-notes.md): aligned keys with tf32 products: forward substitution 3.9e-4, the
product form 6.4e-3, so the product form was not built. Round 9 adds the whole [64, 64] inverse:
the blocked substitution (21 products) against block doubling (10 products, now the default).
"""
import numpy as np

SB = 16  # rows per diagonal block, as in the kernels
rng = np.random.default_rng(0)


def make_A(aligned: bool, n: int = 64, K: int = 64) -> np.ndarray:
    """beta_t (k_t . k_j) e^{G_t - G_j} below the diagonal, as the prep forms it."""
    if aligned:
        k = 4 * rng.standard_normal(K) + 0.3 * rng.standard_normal((n, K))
        beta = 0.5 + 0.05 * rng.standard_normal(n)
        G = np.cumsum(-0.02 * np.log1p(np.exp(rng.standard_normal(n) - 1)))
    else:
        k = rng.standard_normal((n, K))
        beta = 1 / (1 + np.exp(-rng.standard_normal(n)))
        G = np.cumsum(-np.log1p(np.exp(rng.standard_normal(n) - 1)))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    return np.tril(beta[:, None] * (k @ k.T) * np.exp(G[:, None] - G[None, :]), -1)


def tf32(x) -> np.ndarray:
    """x rounded toward zero to tf32's 10 mantissa bits."""
    x = np.asarray(x, np.float32).copy()
    x.view(np.uint32)[...] &= np.uint32(0xFFFFE000)
    return x


def dot(a, b, prec: str) -> np.ndarray:
    if prec == "tf32":
        return (tf32(a).astype(np.float64) @ tf32(b).astype(np.float64)).astype(np.float32)
    return (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float32)


def block_diagonal(A: np.ndarray) -> np.ndarray:
    r = np.arange(A.shape[0])
    return np.where((r[:, None] // SB) == (r[None, :] // SB), A, 0).astype(np.float32)


def forward_substitution(A: np.ndarray, prec: str) -> np.ndarray:
    """Row s of every block at step s (the kernels' unit_lower_inverse, stage 1)."""
    r = np.arange(A.shape[0])
    eye = np.eye(A.shape[0], dtype=np.float32)
    Ad, X = block_diagonal(A), eye.copy()
    for s in range(1, SB):
        X = np.where((r % SB == s)[:, None], eye - dot(Ad, X, prec), X)
    return X


def product_form(A: np.ndarray, prec: str) -> np.ndarray:
    """(I - A)(I + A^2)(I + A^4)(I + A^8), exact for nilpotent A of index 16."""
    eye = np.eye(A.shape[0], dtype=np.float32)
    Ad = block_diagonal(A)
    X, P = eye - Ad, dot(Ad, Ad, prec)
    for _ in range(3):
        X, P = dot(X, eye + P, prec), dot(P, P, prec)
    return X


def blocked(A: np.ndarray, prec: str) -> np.ndarray:
    """The whole [64, 64] inverse as _common.unit_lower_inverse forms it: forward substitution in the
    diagonal blocks (15 products), then block forward substitution below them (6 products)."""
    r = np.arange(A.shape[0])
    eye = np.eye(A.shape[0], dtype=np.float32)
    same = (r[:, None] // SB) == (r[None, :] // SB)
    X = forward_substitution(A, prec)
    D_inv, A_off = X, np.where(same, 0, A).astype(np.float32)
    for i in range(1, A.shape[0] // SB):
        R = eye - dot(A_off, X, prec)
        X = np.where((r // SB == i)[:, None], dot(D_inv, R, prec), X)
    return X


def doubling(A: np.ndarray, prec: str) -> np.ndarray:
    """The whole inverse as _common.unit_lower_inverse_doubling forms it (round 9): X <- X - X (A_n X)
    for block sizes n = 4 .. 64, after X = I - A on the 2x2 blocks (10 products)."""
    r = np.arange(A.shape[0])
    R, Cc = r[:, None], r[None, :]
    X = (np.eye(A.shape[0]) - np.where(R // 2 == Cc // 2, A, 0)).astype(np.float32)
    n = 4
    while n <= A.shape[0]:
        A_n = np.where((R // n == Cc // n) & ((R // (n // 2)) % 2 == 1) & ((Cc // (n // 2)) % 2 == 0), A, 0)
        X = X - dot(X, dot(A_n.astype(np.float32), X, prec), prec)
        n *= 2
    return X


def compare(title: str, forms: dict, part) -> None:
    """Max relative error of each form of (I + part(A))^-1 against float64, over 20 draws per case."""
    print(title)
    for aligned in (False, True):
        for prec in ("fp32", "tf32"):
            errs = {name: [] for name in forms}
            for _ in range(20):
                A = part(make_A(aligned))
                ref = np.linalg.inv(np.eye(64) + A.astype(np.float64))
                for name, fn in forms.items():
                    errs[name].append(np.linalg.norm(fn(A, prec) - ref) / np.linalg.norm(ref))
            print(f"aligned={aligned} {prec}: " + "  ".join(f"{n} max {max(e):.2e}" for n, e in errs.items()))


def main() -> None:
    compare("the 16x16 diagonal blocks:", {"forward-sub": forward_substitution, "product form": product_form},
            block_diagonal)
    compare("the whole [64, 64] inverse:", {"blocked (21 products)": blocked, "doubling (10 products)": doubling},
            lambda A: A.astype(np.float32))


if __name__ == "__main__":
    main()
