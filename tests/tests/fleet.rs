//! Fleet operations through the CLI: every site of a platform migrated to a newer
//! platform in one batch, each answering from there with its own content. Real
//! WordPress sites on nginx and php-fpm.

use aegir_e2e::{Options, fetch_showing, random_suffix, start_with_php};

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
