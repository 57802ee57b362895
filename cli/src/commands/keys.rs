//! `aegir keys new`, `aegir keys server @SERVER` and `aegir keys partner NAME`: the keys
//! that sign messages. The master key stays with task-api and the scheduler; each
//! server's workers get only their own server's key, so they cannot sign work for another
//! server; each partner gets only its own key, so it cannot send another's commands.

use std::process::ExitCode;

use aegir_amqp::signing::{MasterKey, SigningKey, load_key};
use aegir_contract::ContextName;

use crate::args::{KeysCommand, PartnerKeyArgs, ServerKeyArgs};
use crate::error::CliError;

pub fn run(command: KeysCommand) -> Result<ExitCode, CliError> {
    let key = match command {
        KeysCommand::New => SigningKey::from_bytes(rand::random()),
        KeysCommand::Server(args) => server_key(&args)?,
        KeysCommand::Partner(args) => partner_key(&args)?,
    };
    println!("{}", key.to_hex());
    Ok(ExitCode::SUCCESS)
}

fn server_key(args: &ServerKeyArgs) -> Result<SigningKey, CliError> {
    let ContextName::Server(server) = &args.server else {
        return Err(CliError::usage("@SERVER", format!("`{}` is not a server; use @server_<name>", args.server)));
    };
    Ok(master_key(&args.master)?.server(server))
}

fn partner_key(args: &PartnerKeyArgs) -> Result<SigningKey, CliError> {
    Ok(master_key(&args.master)?.partner(&args.partner))
}

fn master_key(args: &aegir_config::SigningKeyArgs) -> Result<MasterKey, CliError> {
    let master = load_key(
        "master signing key",
        "AEGIR_SIGNING_KEY",
        args.signing_key.as_deref(),
        args.signing_key_file.as_deref(),
    )
    .map_err(|e| CliError::usage("--signing-key-file", e.to_string()))?;
    Ok(MasterKey::new(master))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegir_config::SigningKeyArgs;

    fn args(server: &str, key: Option<&str>) -> ServerKeyArgs {
        ServerKeyArgs {
            server: ContextName::parse(server).unwrap(),
            master: SigningKeyArgs { signing_key: key.map(str::to_owned), signing_key_file: None },
        }
    }

    #[test]
    fn a_server_key_is_derived_from_the_master_key_and_differs_per_server() {
        let master = "ab".repeat(32);
        let web1 = server_key(&args("@server_web1", Some(&master))).unwrap();
        let web2 = server_key(&args("@server_web2", Some(&master))).unwrap();
        assert_ne!(web1, web2);
        let expected = MasterKey::new(SigningKey::parse(&master).unwrap())
            .server(&aegir_contract::ServerName::parse("server_web1").unwrap());
        assert_eq!(web1, expected);
    }

    #[test]
    fn a_partner_key_is_derived_from_the_master_key_and_differs_from_server_keys() {
        let master = "ab".repeat(32);
        let partner = |name: &str| PartnerKeyArgs {
            partner: aegir_contract::PartnerName::parse(name).unwrap(),
            master: SigningKeyArgs { signing_key: Some(master.clone()), signing_key_file: None },
        };
        let billing = partner_key(&partner("billing")).unwrap();
        let expected = MasterKey::new(SigningKey::parse(&master).unwrap())
            .partner(&aegir_contract::PartnerName::parse("billing").unwrap());
        assert_eq!(billing, expected);
        assert_ne!(billing, partner_key(&partner("other")).unwrap());
        assert_ne!(billing, server_key(&args("@server_billing", Some(&master))).unwrap());
        let missing = PartnerKeyArgs {
            master: SigningKeyArgs { signing_key: None, signing_key_file: None },
            ..partner("billing")
        };
        assert!(partner_key(&missing).unwrap_err().to_string().contains("AEGIR_SIGNING_KEY_FILE"));
    }

    #[test]
    fn a_server_key_needs_a_server_and_the_master_key() {
        let master = "ab".repeat(32);
        let not_a_server = server_key(&args("@platform_wp", Some(&master))).unwrap_err().to_string();
        assert!(not_a_server.contains("not a server"), "{not_a_server}");
        let missing = server_key(&args("@server_web1", None)).unwrap_err().to_string();
        assert!(missing.contains("AEGIR_SIGNING_KEY_FILE"), "{missing}");
        let bad = server_key(&args("@server_web1", Some("1234"))).unwrap_err().to_string();
        assert!(bad.contains("64 hexadecimal"), "{bad}");
    }
}
