"""CPU experiment (numpy): accuracy of two ways to invert the 16x16 diagonal blocks of I + A, the first
stage of the prep's inverse, against float64 -- forward substitution (the kernels' way, 15 dependent
products) and the product form (I - A)(I + A^2)(I + A^4)(I + A^8) (about 4 dependent steps, which
would shorten the latency-bound inverse kernel). Products in fp32 or with operands rounded to tf32 (10
mantissa bits, as the tensor cores take them for 16-bit inputs). Keys random or aligned (one shared
direction, beta ~ 0.5, slow decay: the regime of converted layers).

    python benchmarks/inverse_forms_cpu.py

Round 7 (kernels-notes.md): aligned keys with tf32 products: forward substitution 3.9e-4, the
product form 6.4e-3, so the product form was not built.
"""
import numpy as np
rng = np.random.default_rng(0)
def make_A(aligned, n=64, K=64):
    if aligned:
        c = rng.standard_normal(K); k = 4*c + 0.3*rng.standard_normal((n, K))
        beta = 0.5 + 0.05*rng.standard_normal(n); gdec = np.cumsum(-0.02*np.log1p(np.exp(rng.standard_normal(n)-1)))
    else:
        k = rng.standard_normal((n, K)); beta = 1/(1+np.exp(-rng.standard_normal(n))); gdec = np.cumsum(-np.log1p(np.exp(rng.standard_normal(n)-1)))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    D = np.exp(gdec[:, None] - gdec[None, :])
    A = np.tril(beta[:, None] * (k @ k.T) * D, -1)
    return A
def tf32(x):
    x = np.asarray(x, np.float32).copy(); b = x.view(np.uint32); b &= np.uint32(0xFFFFE000); return x
def dot(a, b, prec):
    if prec == "tf32": return (tf32(a).astype(np.float64) @ tf32(b).astype(np.float64)).astype(np.float32)
    return (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float32)
def blockdiag(A, SB=16):
    n = A.shape[0]; r = np.arange(n); return np.where((r[:, None]//SB) == (r[None, :]//SB), A, 0)
def fwd_sub_blocks(A, prec, SB=16):
    n = A.shape[0]; r = np.arange(n); eye = np.eye(n, dtype=np.float32); Ad = blockdiag(A).astype(np.float32); X = eye.copy()
    for s in range(1, SB):
        Y = dot(Ad, X, prec); X = np.where((r % SB == s)[:, None], eye - Y, X)
    return X
def doubling_blocks(A, prec):
    n = A.shape[0]; eye = np.eye(n, dtype=np.float32); Ad = blockdiag(A).astype(np.float32)
    X = eye - Ad; P = dot(Ad, Ad, prec)
    for _ in range(3):
        X = dot(X, eye + P, prec); P = dot(P, P, prec)
    return X
for aligned in (False, True):
    for prec in ("fp32", "tf32"):
        e1, e2 = [], []
        for t in range(20):
            A = make_A(aligned); ref = np.linalg.inv(np.eye(64) + blockdiag(A))
            e1.append(np.linalg.norm(fwd_sub_blocks(A, prec) - ref) / np.linalg.norm(ref))
            e2.append(np.linalg.norm(doubling_blocks(A, prec) - ref) / np.linalg.norm(ref))
        print(f"aligned={aligned} {prec}: forward-sub max {max(e1):.2e}  doubling max {max(e2):.2e}")
