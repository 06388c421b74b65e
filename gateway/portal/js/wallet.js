// The patient's own wallet, whichever it is: wallets announce themselves with EIP-6963; an
// older one that only sets window.ethereum is used when none announces. Every wallet error is
// turned into words and a way forward.

const announced = new Map();
let chosen = null;

window.addEventListener("eip6963:announceProvider", (event) => {
  const { info, provider } = event.detail || {};
  if (info?.uuid && provider?.request) announced.set(info.uuid, { info, provider });
});

/** The wallets in this browser (waits briefly for announcements). */
export async function discover() {
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const found = [...announced.values()];
  if (found.length === 0 && window.ethereum?.request) {
    found.push({ info: { uuid: "window.ethereum", name: "Browser wallet", icon: "" }, provider: window.ethereum });
  }
  return found;
}

export function choose(wallet) {
  chosen = wallet;
  sessionStorage.setItem("carechain.wallet", wallet.info.uuid);
}

/** The wallet chosen earlier in this tab, after a reload. */
export async function rechoose() {
  if (chosen) return chosen;
  const uuid = sessionStorage.getItem("carechain.wallet");
  if (!uuid) return null;
  const found = (await discover()).find((w) => w.info.uuid === uuid);
  if (found) chosen = found;
  return chosen;
}

export class WalletError extends Error {
  /** kind: "refused" | "wrong-chain" | "unknown-chain" | "no-wallet" | "failed" */
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

function explain(error, doing) {
  const code = error?.code ?? error?.data?.originalError?.code;
  if (code === 4001) {
    return new WalletError("refused", `You declined ${doing} in your wallet. Nothing was signed or shared. You can try again whenever you are ready.`);
  }
  if (code === 4902) {
    return new WalletError("unknown-chain", "Your wallet does not know the carechain network yet. Add it in your wallet (your care provider can tell you its details), then try again.");
  }
  if (code === -32002) {
    return new WalletError("failed", "Your wallet is already waiting for you: open it and answer the request there.");
  }
  return new WalletError("failed", `Your wallet could not complete ${doing}${error?.message ? ` (${error.message})` : ""}. Please try again.`);
}

async function request(method, params, doing) {
  const wallet = chosen || (await rechoose());
  if (!wallet) throw new WalletError("no-wallet", "Choose your wallet first.");
  try {
    return await wallet.provider.request(params === undefined ? { method } : { method, params });
  } catch (error) {
    throw explain(error, doing);
  }
}

export async function account() {
  const accounts = await request("eth_requestAccounts", undefined, "to connect");
  if (!accounts?.length) throw new WalletError("refused", "Your wallet shared no account. Unlock it, then try again.");
  return accounts[0].toLowerCase();
}

export async function chainId() {
  return parseInt(await request("eth_chainId", undefined, "to tell its network"), 16);
}

/** Throws "wrong-chain" when the wallet is not on `expected`. */
export async function requireChain(expected) {
  const current = await chainId();
  if (current !== expected) {
    throw new WalletError("wrong-chain",
      `Your wallet is connected to another network (${current}). carechain runs on network ${expected}: switch your wallet to it to continue.`);
  }
}

export async function switchChain(expectedHex) {
  await request("wallet_switchEthereumChain", [{ chainId: expectedHex }], "to switch network");
}

function utf8Hex(text) {
  return `0x${[...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export async function signMessage(address, text) {
  return request("personal_sign", [utf8Hex(text), address], "to sign in");
}

export async function signTypedData(address, typedData) {
  return request("eth_signTypedData_v4", [address, JSON.stringify(typedData)], "to sign");
}

/** Calls `handler` when the wallet changes account or network. */
const watched = new WeakSet();

export function watch(handler) {
  const provider = chosen?.provider;
  if (!provider?.on || watched.has(provider)) return;
  watched.add(provider);
  provider.on("accountsChanged", (accounts) => handler("account", accounts));
  provider.on("chainChanged", (id) => handler("chain", id));
}
