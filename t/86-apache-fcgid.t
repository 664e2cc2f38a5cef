#!/usr/bin/perl
# Deployment: RT 5 (or 4.4: HETEST_RT_HOME) under Apache 2 with mod_fcgid,
# as Debian's rt5-apache2 (rt4-apache2) sets it up
# (/etc/request-tracker5/apache2-fcgid.conf, included as it is),
# on a private httpd config and port, with a private PostgreSQL.  Real HTTP,
# no cookie jar.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use HETest::Web qw(:all);
BEGIN { require_or_skip(web_missing('rt', 'apache-fcgid')) }
use Test::More;

my $rt  = rt_for_web();
my $web = start_apache_fcgid($rt);
note 'RT under Apache/mod_fcgid at ' . $web->base . ', config ' . $web->{conf};

subtest "Debian's include is used as it is; a later FcgidInitialEnv wins" => sub {
    my $conf = HETest::Web::slurp($web->{conf});
    like $conf, qr{^Include \Q$HETest::Web::RT_ETC\E/apache2-fcgid\.conf$}m, 'Include of the Debian file';
    like HETest::Web::slurp("$HETest::Web::RT_ETC/apache2-fcgid.conf"),
        qr{^FcgidInitialEnv RT_SITE_CONFIG /etc/}m, 'which names the system site config';
    # the plugin is loaded at all only through the private site config
    my $r = http_get($web->url('/healthz/ping'));
    is $r->{content}, 'pong', 'the private site config (with the plugin) is the one RT read';
};

deployment_checks($rt, $web);

$web->stop;
$rt->cleanup;
done_testing;
