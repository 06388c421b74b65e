// Sign in with the wallet: EIP-4361 text written by the gateway, signed with personal_sign,
// exchanged for a short-lived token at POST /auth/login.

import { api } from "../api.js";
import { startSession, signedIn } from "../session.js";
import { h, page, notify, clearNotice, busy } from "../ui.js";
import * as wallet from "../wallet.js";

export async function render(ctx, signedInNow) {
  const list = h("div", { class: "wallets" }, h("p", {}, "Looking for your wallet…"));
  page("Sign in with your wallet",
    h("p", {}, "carechain uses your wallet to prove it is you. Signing in shares only your wallet address; it costs nothing and moves no money."),
    h("section", { "aria-labelledby": "wallets-title" },
      h("h2", { id: "wallets-title" }, "Choose your wallet"),
      list));
  const found = await wallet.discover();
  if (found.length === 0) {
    list.replaceChildren(
      h("p", {}, "No wallet was found in this browser. Install a wallet app or extension (MetaMask, Rabby, Frame or Coinbase Wallet, for example), import the key your care provider gave you, then reload this page."),
      h("button", { type: "button", onclick: () => location.reload() }, "Reload"));
    return;
  }
  list.replaceChildren(...found.map((w) => {
    const button = h("button", { type: "button", class: "secondary" },
      w.info.icon ? h("img", { src: w.info.icon, alt: "" }) : null,
      `Sign in with ${w.info.name}`);
    button.addEventListener("click", () => busy(button, () => signIn(w, ctx, signedInNow)));
    return button;
  }));
}

async function signIn(chosen, ctx, signedInNow) {
  clearNotice();
  wallet.choose(chosen);
  try {
    const address = await wallet.account();
    try {
      await wallet.requireChain(ctx.chainId);
    } catch (error) {
      if (error.kind !== "wrong-chain") throw error;
      notify("warn", error.message, [{
        label: "Switch my wallet to the carechain network",
        run: async () => {
          try {
            await wallet.switchChain(ctx.chainIdHex);
            clearNotice();
            await signIn(chosen, ctx, signedInNow);
          } catch (switchError) {
            notify("error", switchError.message);
          }
        },
      }]);
      return;
    }
    const { message } = await api("/portal/api/sign-in", { method: "POST", body: { address }, auth: false });
    const signature = await wallet.signMessage(address, message);
    const login = await api("/auth/login", { method: "POST", body: { message, signature }, auth: false });
    startSession(login.address, login.access_token, login.expires_in);
    wallet.watch((what, value) => {
      const current = signedIn();
      if (what === "account" && current && value?.[0]?.toLowerCase() !== current.address) {
        notify("warn", "Your wallet switched to another account. You are still signed in as before; sign out and in again to use the other account.");
      }
    });
    clearNotice();
    signedInNow();
  } catch (error) {
    notify(error.kind === "refused" ? "warn" : "error", error.message);
  }
}
