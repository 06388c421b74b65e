//! `carechain keys`: Web3 Secret Storage keystores.

use crate::keys as keystore;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a new random key in an encrypted keystore.
    #[command(after_help = "Examples:\n  carechain keys new --name alice\n  \
        carechain keys new --name ci-relayer --password-file ./relayer.pass\n\n\
        The key itself is never shown; the address is. Keystores are created 0600 in a 0700 directory.")]
    New {
        /// Name of the keystore (its file name in the keystore directory).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        dir: keystore::KeystoreDirArgs,
        #[command(flatten)]
        password: keystore::PasswordArgs,
    },
    /// Import a private key (typed at a hidden prompt, or one line on standard input) or an
    /// existing keystore file into the keystore directory.
    #[command(
        after_help = "Examples:\n  carechain keys import --name alice            # asks for the key and a password\n  \
        carechain keys import --name bob --from ~/.foundry/keystores/bob\n  \
        carechain keys import --name dev --password-file p.txt < key.hex"
    )]
    Import {
        /// Name of the new keystore.
        #[arg(long)]
        name: String,
        /// Copy this keystore file (cast, geth) instead of reading a private key; its password
        /// opens it and stays its password.
        #[arg(long, value_name = "KEYSTORE_FILE")]
        from: Option<PathBuf>,
        #[command(flatten)]
        dir: keystore::KeystoreDirArgs,
        #[command(flatten)]
        password: keystore::PasswordArgs,
    },
    /// List the keystores and their addresses (no password needed).
    #[command(after_help = "Example:\n  carechain keys list\n  carechain keys list --json")]
    List {
        #[command(flatten)]
        dir: keystore::KeystoreDirArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unlock a key and print its address (checks the password).
    #[command(after_help = "Example:\n  carechain keys address --key alice")]
    Address {
        #[command(flatten)]
        key: keystore::KeyArgs,
    },
}

impl KeysCommand {
    /// Runs the command.
    pub(crate) fn run(self) -> eyre::Result<()> {
        match self {
            Self::New {
                name,
                dir,
                password,
            } => keystore::new_key(&dir, &password, &name)?,
            Self::Import {
                name,
                from,
                dir,
                password,
            } => {
                let source = match from {
                    Some(path) => keystore::ImportSource::Keystore(path),
                    None => keystore::ImportSource::PrivateKey,
                };
                keystore::import_key(&dir, &password, &name, source)?
            }
            Self::List { dir, json } => keystore::list_keys(&dir, json)?,
            Self::Address { key } => println!("{}", key.signer()?.address()),
        }
        Ok(())
    }
}
