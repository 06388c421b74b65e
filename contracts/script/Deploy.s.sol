// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AuditAnchor} from "../AuditAnchor.sol";
import {ConsentRegistry} from "../ConsentRegistry.sol";
import {ProviderRegistry} from "../ProviderRegistry.sol";
import {RecordRegistry} from "../RecordRegistry.sol";
import {ScriptBase, ScriptVm} from "./ScriptBase.sol";

/// @title Deploy
/// @notice Deploys ProviderRegistry, ConsentRegistry, RecordRegistry and AuditAnchor, wires
/// RecordRegistry as the registry's membership mirror, hands governance over, and writes the
/// deployment manifest that the indexer and the gateway read.
///
///   DEPLOY_MANIFEST=deployments/31337.json forge script contracts/script/Deploy.s.sol \
///     --rpc-url URL --broadcast --private-key KEY
///
/// Environment:
/// - `GOVERNANCE`: holder of the governance and admin roles of every contract (default: the
///   deployer). In production a multisig or timelock.
/// - `MAX_BREAK_GLASS_SECONDS`: longest break-glass session (default 4 hours).
/// - `DEPLOY_MANIFEST`: where the manifest goes (default `deployments/<chainId>.json`). forge
///   only lets scripts write where `fs_permissions` in foundry.toml allows, which is
///   `deployments/`; `scripts/lib.sh deploy_contracts` stages the file there and moves it when
///   another path is wanted.
///
/// The manifest is written only when broadcasting: a dry run deploys nothing, and a manifest
/// naming undeployed addresses would send the indexer after contracts that do not exist.
contract Deploy is ScriptBase {
    /// @dev Long enough for an emergency department shift's first hours; governance may change it.
    uint256 internal constant DEFAULT_MAX_BREAK_GLASS_SECONDS = 4 hours;

    /// @notice The addresses deployed by `run`.
    struct Deployment {
        ProviderRegistry providers;
        ConsentRegistry consents;
        RecordRegistry records;
        AuditAnchor audit;
    }

    error DeployNoSigner();
    error DeployInvalidBreakGlassDuration(uint256 seconds_);
    error DeployManifestNotWritable(string path);

    function run() external returns (Deployment memory d) {
        // With exactly one `--private-key`, forge runs the script as that key's address.
        address deployer = msg.sender;
        if (deployer == FORGE_DEFAULT_SENDER) revert DeployNoSigner();
        address governance = vm.envOr("GOVERNANCE", deployer);
        uint256 maxBreakGlass = vm.envOr("MAX_BREAK_GLASS_SECONDS", DEFAULT_MAX_BREAK_GLASS_SECONDS);
        if (maxBreakGlass > type(uint32).max) revert DeployInvalidBreakGlassDuration(maxBreakGlass);
        string memory manifestPath = vm.envOr("DEPLOY_MANIFEST", string(""));
        if (bytes(manifestPath).length == 0) {
            manifestPath = string.concat("deployments/", vm.toString(block.chainid), ".json");
        }

        // The script runs against the latest block, so the first transaction can land in the
        // next block at the earliest: exact on an automining chain such as anvil, and a safe
        // lower bound elsewhere (an indexer backfilling from it misses nothing).
        // `deploy_contracts` in scripts/lib.sh replaces it by the block from the receipts.
        uint256 deploymentBlock = block.number + 1;

        vm.startBroadcast(deployer);
        // The deployer governs the registry until the mirror is wired, since wiring is
        // governance-only, and hands it over below.
        d.providers = new ProviderRegistry(deployer);
        // forge-lint: disable-next-line(unsafe-typecast)
        d.consents = new ConsentRegistry(d.providers, governance, uint32(maxBreakGlass)); // checked above
        d.records = new RecordRegistry(d.providers);
        d.audit = new AuditAnchor(governance);
        d.providers.setMembershipMirror(d.records);
        if (governance != deployer) {
            d.providers.grantRole(d.providers.DEFAULT_ADMIN_ROLE(), governance);
            d.providers.grantRole(d.providers.GOVERNOR_ROLE(), governance);
            d.providers.renounceRole(d.providers.GOVERNOR_ROLE(), deployer);
            d.providers.renounceRole(d.providers.DEFAULT_ADMIN_ROLE(), deployer);
        }
        vm.stopBroadcast();

        log(string.concat("ProviderRegistry ", vm.toString(address(d.providers))));
        log(string.concat("ConsentRegistry  ", vm.toString(address(d.consents))));
        log(string.concat("RecordRegistry   ", vm.toString(address(d.records))));
        log(string.concat("AuditAnchor      ", vm.toString(address(d.audit))));
        log(string.concat("governance       ", vm.toString(governance)));

        if (
            !vm.isContext(ScriptVm.ForgeContext.ScriptBroadcast)
                && !vm.isContext(ScriptVm.ForgeContext.ScriptResume)
        ) {
            log("dry run (no --broadcast): no manifest written");
            return d;
        }
        // A path forge may not write makes the whole script revert here, before anything is
        // broadcast, rather than leave contracts deployed without their manifest.
        try vm.writeFile(manifestPath, _manifest(d, deployer, deploymentBlock)) {}
        catch {
            log(
                string.concat(
                    "cannot write ",
                    manifestPath,
                    ": forge scripts may only write under deployments/ (fs_permissions in foundry.toml);",
                    " use scripts/lib.sh deploy_contracts for other paths"
                )
            );
            revert DeployManifestNotWritable(manifestPath);
        }
        log(string.concat("manifest written to ", manifestPath));
    }

    /// @dev Built by hand rather than with `serializeJson` so the key order is the documented one.
    function _manifest(Deployment memory d, address deployer, uint256 deploymentBlock)
        internal
        view
        returns (string memory)
    {
        string memory contracts = string.concat(
            "{\n    \"ProviderRegistry\": \"",
            vm.toString(address(d.providers)),
            "\",\n    \"ConsentRegistry\": \"",
            vm.toString(address(d.consents)),
            "\",\n    \"RecordRegistry\": \"",
            vm.toString(address(d.records)),
            "\",\n    \"AuditAnchor\": \"",
            vm.toString(address(d.audit)),
            "\"\n  }"
        );
        return string.concat(
            "{\n  \"chainId\": ",
            vm.toString(block.chainid),
            ",\n  \"deploymentBlock\": ",
            vm.toString(deploymentBlock),
            ",\n  \"deployer\": \"",
            vm.toString(deployer),
            "\",\n  \"contracts\": ",
            contracts,
            "\n}\n"
        );
    }
}
