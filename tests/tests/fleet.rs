//! Fleet operations through the CLI: every site of a platform migrated to a newer
//! platform in one batch, each answering from there with its own content (real
//! WordPress sites on nginx and php-fpm); and every site of a platform verified in one
//! batch with a few config tests and reloads of the real nginx, not one per site.

use aegir_e2e::{Options, fetch, fetch_showing, log_field, random_suffix, start_with_php};

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_migrates_every_site_of_a_platform() {
    let (system, _fpm) = start_with_php(Options::default()).await;
    system.server_ready().await;
    system.wordpress_platform("wp_old").await;
    let new_root = system.wordpress_platform("wp_new").await;
    let suffix = random_suffix();
    let sites: Vec<(String, String)> =
        (1..=3).map(|i| (format!("fleet{i}-{suffix}.example.com"), format!("Fleet site {i} {suffix}"))).collect();
    for (uri, title) in &sites {
        system.installed_site("wp_old", uri, title).await;
    }

    let out = system.cli(&["batch", "@platform_wp_old", "migrate", "--to=@platform_wp_new", "--parallel=2"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("3 done, 0 failed"), "the summary counts every site: {out}");
    for (uri, title) in &sites {
        let (status, body) = fetch_showing(uri, system.http_port, title, true).await;
        assert!(status == 200 && body.contains(title.as_str()), "{uri} answers from the new platform: {status}");
        assert!(new_root.join("sites").join(uri).is_dir());
        let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
        assert_eq!(view["platform"], "@platform_wp_new", "{view}");
    }
    // Nothing is left to move: a second batch has no site to act on.
    let out = system.cli(&["batch", "@platform_wp_old", "migrate", "--to=@platform_wp_new"]).await;
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains("has no site"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_verify_of_many_sites_shares_a_few_config_tests_and_reloads() {
    const SITES: usize = 300;
    // Bulk steps get all slots but one; one reload carries half of them, so 300 changes
    // fit in two reloads when they all come in together.
    let options = Options::default().env("http-worker", "AEGIR_PREFETCH", "301");
    let (system, _fpm) = start_with_php(options).await;
    system.server_ready().await;
    let root = system.php_platform("many").await;
    let uris = system.insert_enabled_sites("many", &root, "many", SITES).await;

    let (reloads_before, cycles_before) = (system.nginx_reloads(), system.config_cycles().len());
    let out = system.cli(&["batch", "@platform_many", "verify", "--parallel=300"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains(&format!("{SITES} done, 0 failed")), "{out}");
    // The worker logs a cycle once it has answered its steps.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let reloads = system.nginx_reloads() - reloads_before;
    let cycles = system.config_cycles().split_off(cycles_before);
    let sum = |field: &str| -> usize { cycles.iter().map(|c| log_field(c, field) as usize).sum() };
    assert_eq!(sum("changes"), SITES, "every vhost was written once: {cycles:#?}");
    // A cycle is one config test and one reload; the batch's changes may take a few
    // cycles when its first steps come in before the rest.
    assert!((1..=4).contains(&reloads), "{reloads} reloads for {SITES} sites: {cycles:#?}");
    assert_eq!(sum("tests"), cycles.len(), "one config test per cycle: {cycles:#?}");
    assert!(cycles.len() <= 4, "{} cycles for {SITES} sites: {cycles:#?}", cycles.len());

    // Every site's change was live once its task succeeded: each answers with its own page.
    for uri in uris.iter().step_by(SITES / 10) {
        let (status, body, _) = fetch(uri, system.http_port, "/", false).await;
        assert!(status == 200 && body.contains(&format!("site {uri}\n")), "{uri} answered {status}: {body}");
    }
}
