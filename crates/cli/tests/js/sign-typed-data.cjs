// A second, independent EIP-712 implementation for the CLI's wallet-compatibility test:
// ethers (a JavaScript wallet library) signs typed data exactly as a browser wallet's
// eth_signTypedData_v4 receives it.
//
// Input on stdin (JSON): {"typedData": {types, primaryType, domain, message}, "privateKey": "0x.."}
// Output on stdout (JSON): {"signature": "0x..", "digest": "0x..", "address": "0x.."}
"use strict";
const { Wallet, TypedDataEncoder } = require("ethers");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", async () => {
  const { typedData, privateKey } = JSON.parse(input);
  // eth_signTypedData_v4 carries EIP712Domain in `types`; ethers derives it from `domain`
  // and refuses it among the struct types.
  const types = { ...typedData.types };
  delete types.EIP712Domain;
  const wallet = new Wallet(privateKey);
  const signature = await wallet.signTypedData(typedData.domain, types, typedData.message);
  const digest = TypedDataEncoder.hash(typedData.domain, types, typedData.message);
  process.stdout.write(JSON.stringify({ signature, digest, address: wallet.address }));
});
