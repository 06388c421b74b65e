// The test wallet, injected into every page before the portal's own scripts: an EIP-1193
// provider announced with EIP-6963 (or, for an older wallet, set as window.ethereum) whose requests go to the test (window.__carechainWallet),
// which forwards signing to anvil's JSON-RPC for an unlocked dev account: anvil signs with
// the account's key, so every signature the portal receives is real.
(() => {
  const listeners = {};
  const emit = (event, value) => (listeners[event] || []).forEach((fn) => fn(value));
  const provider = {
    async request({ method, params }) {
      const answer = await window.__carechainWallet(method, params === undefined ? [] : params);
      if (answer && answer.error) {
        const error = new Error(answer.error.message);
        error.code = answer.error.code;
        throw error;
      }
      if (method === "wallet_switchEthereumChain") emit("chainChanged", params[0].chainId);
      return answer.result;
    },
    on(event, fn) {
      (listeners[event] = listeners[event] || []).push(fn);
      return provider;
    },
    removeListener(event, fn) {
      listeners[event] = (listeners[event] || []).filter((f) => f !== fn);
      return provider;
    },
  };
  if (window.__carechainLegacyWallet) {
    // An older wallet: no EIP-6963 announcement, only window.ethereum.
    window.ethereum = provider;
    return;
  }
  const info = Object.freeze({
    uuid: "8f0c9a34-7d4e-4a4b-9f52-5c2f6c1c0a11",
    name: "carechain test wallet",
    icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 8 8'%3E%3Crect width='8' height='8' fill='%23444'/%3E%3C/svg%3E",
    rdns: "org.carechain.testwallet",
  });
  const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", {
    detail: Object.freeze({ info, provider }),
  }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
