#!/usr/bin/perl
# Deployment: RT 5 (or 4.4: HETEST_RT_HOME) under Apache 2 with mod_perl 2,
# from Debian's /etc/request-tracker5/apache2-modperl2.conf (or 4; its
# RT_SITE_CONFIG line pointed at the private site config), on a private
# httpd config and port, with a private PostgreSQL.
#
# Also records what a mod_perl worker looks like to code that would fork a
# helper process ($^X, fork, %ENV): see the "mod_perl worker" subtest.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use HETest::Web qw(:all);
BEGIN { require_or_skip(web_missing('rt', 'apache-modperl')) }
use Test::More;

my $rt  = rt_for_web();
my $web = start_apache_modperl($rt);
note 'RT under Apache/mod_perl at ' . $web->base . ', config ' . $web->{conf};

subtest "Debian's apache2-modperl2.conf, RT_SITE_CONFIG changed" => sub {
    my $orig = HETest::Web::slurp("$HETest::Web::RT_ETC/apache2-modperl2.conf");
    my $used = HETest::Web::slurp($web->dir . '/rt-modperl2.conf');
    $used =~ s/\A#[^\n]*\n//;    # our header line
    my @o = split /\n/, $orig;
    my @u = split /\n/, $used;
    is scalar(@u), scalar(@o), 'same number of lines';
    my @diff = grep { $o[$_] ne ($u[$_] // '') } 0 .. $#o;
    is scalar(@diff), 1, 'one line differs';
    like $o[$diff[0] // 0], qr{^PerlSetEnv RT_SITE_CONFIG /etc/}, '... the PerlSetEnv RT_SITE_CONFIG line';
    like $orig, qr{Plack::Handler::Apache2->preload}, 'the file preloads RT in a <Perl> block';
};

# mod_perl's $0 reaches Apache's argv[0] and no further; the checker then
# writes its title over Apache's whole command line, which may cut it
# ("/usr/sbin/apache2 -k start" leaves room for 26 bytes).
deployment_checks($rt, $web);

# What the checker process of issue 11 would meet in a mod_perl worker.
# These are facts about mod_perl, recorded; only a broken fork fails.
subtest 'mod_perl worker: $^X, fork, %ENV' => sub {
    my $r = http_get('http://127.0.0.1:' . $web->port . '/he-diag');
    is $r->{status}, 200, 'diagnostic handler answers' or return diag $r->{content};
    my %d = map { /^(\w+)=(.*)$/ ? ($1 => $2) : () } split /\n/, $r->{content};
    note "$_ = $d{$_}" for sort keys %d;
    is $d{rt_loaded}, 1, 'RT is loaded in the worker (preloaded in the parent)';
    is $d{plugin_loaded}, 1, 'so is the plugin';
    like $d{fork} // '', qr/^child \d+ of $d{pid}, exit status 0$/, 'a worker can fork, the child runs and exits';
    isnt $d{pid}, $d{ppid}, 'the worker is a child of the Apache parent';
    like $d{perl_x} // '', qr{apache2|httpd}, '$^X is the Apache binary, not perl'
        and note 'so a helper must not exec $^X: it would start another Apache';
    is $d{env_RT_SITE_CONFIG}, $rt->rt_env->{RT_SITE_CONFIG}, '%ENV has PerlSetEnv RT_SITE_CONFIG';
    isnt $d{child_env_RT_SITE_CONFIG}, $d{env_RT_SITE_CONFIG},
        '... but a child process does not see it (PerlSetEnv does not reach the C environ)'
        and note "a child sees RT_SITE_CONFIG=$d{child_env_RT_SITE_CONFIG}";
    is $d{mpm}, 'prefork', 'prefork MPM';
};

$web->stop;
$rt->cleanup;
done_testing;
