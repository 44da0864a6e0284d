"""How `LinearProbe` fits its weights: Adam with early stopping (the "focusmim" and
"standardized-accuracy" protocols), or full-batch L-BFGS on the L2-regularised multinomial
logistic loss ("logistic-lbfgs"). Both take tensors already on the device."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: The reference's smallest validation-loss improvement that resets the patience count.
MIN_IMPROVEMENT = 1e-4


def train_adam(train, val, n_classes: int, settings: dict, seed: int, device):
    """Adam on a linear layer with early stopping; returns (layer with the best weights,
    per-epoch monitored values, best epoch)."""
    xt, yt = train
    xv, yv = val
    gen = torch.Generator().manual_seed(int(seed))
    n_features = xt.shape[1]
    layer = torch.nn.Linear(n_features, n_classes)
    bound = 1.0 / np.sqrt(n_features)  # nn.Linear's default init, drawn from our generator
    with torch.no_grad():
        layer.weight.copy_((torch.rand(n_classes, n_features, generator=gen) * 2 - 1) * bound)
        layer.bias.copy_((torch.rand(n_classes, generator=gen) * 2 - 1) * bound)
    layer.to(device)
    optimizer = torch.optim.Adam(layer.parameters(), lr=settings["lr"],
                                 weight_decay=settings["weight_decay"])
    batch_size, on_loss = settings["batch_size"], settings["monitor"] == "val_loss"

    def monitored() -> float:
        with torch.no_grad():
            if not on_loss:
                return float((layer(xv).argmax(dim=1) == yv).float().mean())
            losses = [F.cross_entropy(layer(xv[i : i + batch_size]), yv[i : i + batch_size])
                      for i in range(0, xv.shape[0], batch_size)]
            # one transfer for all batches; the float64 mean of the float32 batch means
            return float(np.mean(torch.stack(losses).cpu().numpy().astype(np.float64)))

    best, best_state, best_epoch, waited, history = None, None, 0, 0, []
    for epoch in range(1, settings["max_epochs"] + 1):
        order = torch.randperm(xt.shape[0], generator=gen).to(device)
        for start in range(0, xt.shape[0], batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(layer(xt[batch]), yt[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        value = monitored()
        history.append(value)
        better = best is None or (value < best if on_loss else value > best)
        if on_loss:  # the reference: a tiny improvement is kept but counts as none
            waited = 0 if better and (best is None or best - value >= MIN_IMPROVEMENT) else waited + 1
        else:
            waited = 0 if better else epoch - best_epoch
        if better:
            best, best_epoch = value, epoch
            best_state = {k: v.detach().clone() for k, v in layer.state_dict().items()}
        if waited >= settings["patience"]:
            break
    if best_state is None:  # max_epochs >= 1 and the first epoch is always the best so far
        raise RuntimeError("the linear probe trained no epoch")
    layer.load_state_dict(best_state)
    return layer, history, best_epoch


def penalty_strength(C: float, n: int, n_classes: int) -> float:
    """λ of the objective mean cross-entropy + λ/2·‖W‖², scikit-learn's C·Σ loss + ½‖w‖²
    divided by C·n. With 2 classes scikit-learn fits one vector w = W₁ - W₀; at the optimum
    W₁ = -W₀ = w/2, so penalising both rows twice as hard gives its objective."""
    return (2.0 if n_classes == 2 else 1.0) / (C * n)


def logistic_objective(x, y, weight, bias, strength: float) -> float:
    """Mean cross-entropy of softmax(x Wᵀ + b) plus strength/2·‖W‖² (float64 result)."""
    with torch.no_grad():
        loss = F.cross_entropy(torch.addmm(bias, x, weight.T), y)
        return float(loss) + 0.5 * strength * float(torch.dot(weight.ravel(), weight.ravel()))


def fit_lbfgs(x, y, n_classes: int, C: float, max_iter: int, tol: float):
    """Full-batch L-BFGS (strong Wolfe line search, 10 corrections, as scipy's L-BFGS-B in
    scikit-learn) on mean cross-entropy + λ/2·‖W‖² (`penalty_strength`), the intercept not
    penalised, from zero weights. Stops when max |gradient| <= tol (scikit-learn's gtol),
    on no progress, or after max_iter iterations.

    The gradient is written by hand rather than by autograd: softmax minus one-hot, two
    matrix products; each step is a few large operations and no graph.

    Returns:
        (weight (n_classes, D), bias (n_classes,), iterations run, objective reached).
    """
    n, d = x.shape
    weight = torch.zeros(n_classes, d, dtype=x.dtype, device=x.device)
    bias = torch.zeros(n_classes, dtype=x.dtype, device=x.device)
    weight.grad, bias.grad = torch.zeros_like(weight), torch.zeros_like(bias)
    one_hot = F.one_hot(y, n_classes).to(x.dtype)
    strength = penalty_strength(C, n, n_classes)

    def closure():
        logits = torch.addmm(bias, x, weight.T)
        lse = torch.logsumexp(logits, dim=1)
        loss = (lse.sum() - torch.dot(logits.ravel(), one_hot.ravel())) / n
        loss = loss + 0.5 * strength * torch.dot(weight.ravel(), weight.ravel())
        residual = logits.sub_(lse[:, None]).exp_().sub_(one_hot).div_(n)  # (p - y) / n
        torch.mm(residual.T, x, out=weight.grad)
        weight.grad.add_(weight, alpha=strength)
        torch.sum(residual, dim=0, out=bias.grad)
        return loss

    # max_eval: the iterations bound the work, as scikit-learn's maxiter (torch's default,
    # 1.25·max_iter evaluations, would stop line searches early)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter,
                                  max_eval=25 * max_iter, tolerance_grad=tol, history_size=10,
                                  line_search_fn="strong_wolfe")
    optimizer.step(closure)
    n_iter = int(optimizer.state[weight].get("n_iter", 0))
    return weight, bias, n_iter, logistic_objective(x, y, weight, bias, strength)
