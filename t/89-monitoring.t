#!/usr/bin/perl
# Monitoring clients against a real RT (HETEST_RT_HOME) with the plugin
# (rt-server + Starman, private PostgreSQL): HAProxy health checks,
# check_http and check_curl, the Prometheus blackbox exporter, and an
# Icinga 2 config.
# Each runs the snippet from eg/ with only addresses and ports changed
# (the README shows the same files).  The database is stopped and started
# once; every client must see: OK, then the status check failing, then OK.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use HETest::Web qw(:all);
BEGIN { require_or_skip(web_missing('rt')) }
use Test::More;
use CPAN::Meta::YAML;
use Text::ParseWords qw(shellwords);
use Time::HiRes qw(time);
use URI::Escape qw(uri_escape);

my %need = map { $_ => [ web_missing($_) ] } qw(haproxy check_http check_curl blackbox icinga2);

my $rt = HETest::RT->new(db => 'Pg', config => {%HETest::Web::HE_CONFIG});
$rt->start;
my $port = $rt->port;
my $dir  = $rt->dir . '/monitoring';
HETest::Web::server_dirs($dir);
my %cfg = %HETest::Web::HE_CONFIG;
my $settle = $cfg{HealthEndpoint_CacheSeconds} + 2 * $cfg{HealthEndpoint_Timeout};
note HETest::RT::rt_description() . " on " . $rt->base_url;
$rt->check_loaded_from;

# ---------------------------------------------------------------- Icinga 2

subtest 'Icinga 2: eg/icinga2.conf passes icinga2 daemon -C' => sub {
    subtest_requires(@{ $need{icinga2} }) or return;
    my $idir = "$dir/icinga2";
    HETest::Web::server_dirs($idir, map { "$idir/$_" } qw(etc cache lib log run spool));
    HETest::Web::write_file("$idir/etc/rt.conf",
        eg_template('icinga2.conf', 'vars.rt_port = 8080' => "vars.rt_port = $port"));
    # the parts of Icinga's own icinga2.conf/constants.conf the snippet needs
    HETest::Web::write_file("$idir/etc/icinga2.conf", <<"EOF");
const PluginDir = "$HETest::Web::PLUGIN_DIR"
include <itl>
include <plugins>
include "rt.conf"
EOF
    # Icinga switches to its run-as user unless that is who runs it: name
    # ourselves, and keep every path it writes in the temp dir.
    my %u     = HETest::Proc::server_user();
    my ($user, $gid) = @u{qw(name gid)};
    my $group = getgrgid($gid) // $gid;
    my @paths = map { ("-D$_->[0]=$idir/$_->[1]") }
        [ConfigDir => 'etc'], [DataDir => 'lib'], [LogDir => 'log'],
        [CacheDir => 'cache'], [SpoolDir => 'spool'], [InitRunDir => 'run'];
    my %env = (env => { ICINGA2_USER => $user, ICINGA2_GROUP => $group });
    my ($rc, $out) = run_as_server($rt, $HETest::Web::ICINGA2, 'daemon', '-C',
        '-c', "$idir/etc/icinga2.conf", @paths, \%env);
    is $rc, 0, 'icinga2 daemon -C: exit 0' or diag $out;
    like $out, qr/Finished validating the configuration/, 'validated';
    unlike $out, qr/\b(?:warning|critical)\//, 'no warning' or diag $out;

    ($rc, $out) = run_as_server($rt, $HETest::Web::ICINGA2, 'object', 'list', '--type', 'Service', @paths, \%env);
    is $rc, 0, 'icinga2 object list' or diag $out;
    for my $svc (qw(rt-status rt-ping)) {
        my ($obj) = $out =~ /(Object 'rt!$svc' of type 'Service':.*?)(?=^Object |\z)/ms;
        ok $obj, "service rt!$svc applied to host rt" or next;
        like $obj, qr/\* check_command = "rt-healthz"/, "$svc: check_command rt-healthz";
        like $obj, qr/\* http_port = $port\b/, "$svc: http_port $port";
    }
    ($rc, $out) = run_as_server($rt, $HETest::Web::ICINGA2, 'object', 'list', '--type', 'CheckCommand',
        '--name', 'rt-healthz', @paths, \%env);
    like $out, qr{\* http_uri = "/healthz/status"}, 'rt-healthz: http_uri /healthz/status';
    # (object list prints strings without escaping the quotes in them)
    like $out, qr{\* http_string = "(?:\\?"status\\?":\\?"ok\\?")"}, 'rt-healthz: http_string "status":"ok"';
    like $out, qr{\* command = \[ "\Q$HETest::Web::PLUGIN_DIR\E/check_http" \]}, 'runs check_http';
};

# ---------------------------------------------------------------- start the clients

my ($hap, $fe_port, $stats_port);
if (!@{ $need{haproxy} }) {
    ($fe_port, $stats_port) = (HETest::Proc::free_port(), HETest::Proc::free_port());
    HETest::Web::write_file("$dir/haproxy.cfg", eg_template('haproxy.cfg',
        '127.0.0.1:8080' => "127.0.0.1:$port",
        '127.0.0.1:8000' => "127.0.0.1:$fe_port",
        '127.0.0.1:8404' => "127.0.0.1:$stats_port"));
    $hap = start_server($rt, name => 'haproxy', port => $stats_port, dir => $dir,
        cmd => [ $HETest::Web::HAPROXY, '-db', '-f', "$dir/haproxy.cfg" ], timeout => 30);
}

my ($bb, $bb_port, @jobs);
if (!@{ $need{blackbox} }) {
    $bb_port = HETest::Proc::free_port();
    HETest::Web::write_file("$dir/blackbox.yml", eg_file('blackbox.yml'));
    $bb = start_server($rt, name => 'blackbox', port => $bb_port, dir => $dir,
        cmd => [ $HETest::Web::BLACKBOX, "--config.file=$dir/blackbox.yml",
                 "--web.listen-address=127.0.0.1:$bb_port" ], timeout => 30);
    # the scrape jobs of eg/prometheus.yml, addresses changed, relabelled
    # as Prometheus would: target from __address__, the exporter's address
    my $prom = eg_template('prometheus.yml',
        '127.0.0.1:8080' => "127.0.0.1:$port", '127.0.0.1:9115' => "127.0.0.1:$bb_port");
    HETest::Web::write_file("$dir/prometheus.yml", $prom);
    my $y = CPAN::Meta::YAML->read_string($prom) or die CPAN::Meta::YAML->errstr;
    for my $job (@{ $y->[0]{scrape_configs} }) {
        my ($exporter) = map { $_->{replacement} }
            grep { ($_->{target_label} // '') eq '__address__' } @{ $job->{relabel_configs} };
        for my $target (map { @{ $_->{targets} } } @{ $job->{static_configs} }) {
            push @jobs, { name => $job->{job_name}, module => $job->{params}{module}[0],
                url => "http://$exporter$job->{metrics_path}?module=$job->{params}{module}[0]"
                       . '&target=' . uri_escape($target) };
        }
    }
}

subtest 'blackbox exporter: eg/blackbox.yml and eg/prometheus.yml' => sub {
    subtest_requires(@{ $need{blackbox} }) or return;
    my ($rc, $out) = run_as_server($rt, $HETest::Web::BLACKBOX, "--config.file=$dir/blackbox.yml", '--config.check');
    is $rc, 0, '--config.check' or diag $out;
    unlike $out, qr/level=warn/, 'no warning (e.g. a deprecated option)' or diag $out;
    is_deeply [ sort map { $_->{module} } @jobs ], [qw(rt_ping rt_status)],
        'eg/prometheus.yml probes RT with both modules';
    if (my $promtool = find_program('promtool')) {
        my ($rc2, $out2) = run_as_server($rt, $promtool, 'check', 'config', "$dir/prometheus.yml");
        is $rc2, 0, 'promtool check config' or diag $out2;
    } else {
        note 'promtool not installed: eg/prometheus.yml is only read here, not validated by Prometheus';
    }
};

# ---------------------------------------------------------------- the checks per phase

my $status_url = $rt->url('/healthz/status');

sub haproxy_states {
    my $r = http_get("http://127.0.0.1:$stats_port/stats;csv");
    return {} unless $r->{status} == 200;
    my ($head, @rows) = split /\n/, $r->{content};
    $head =~ s/^# //;
    my @cols = split /,/, $head;
    my %st;
    for my $row (@rows) {
        my %f;
        @f{@cols} = split /,/, $row, -1;
        $st{"$f{pxname}/$f{svname}"} = $f{status};
    }
    return \%st;
}

my @CHECK_LINES = grep { /\S/ && !/^\s*#/ } split /\n/,
    eg_template('check_http.txt', ' -p 8080 ' => " -p $port ");

sub phase {
    my ($phase, $db, $since) = @_;    # $db: 'ok' or 'fail'; $since: when it changed
    my $code = $db eq 'ok' ? 200 : 503;

    subtest "$phase: RT's status endpoint answers $code" => sub {
        my $got = wait_for_status($status_url, $code, $since);
        ok $got, "$code within CacheSeconds + 2 x Timeout ($settle s)";
        my $r = http_get($status_url);
        is $r->{content}, HETest::RT::status_body({ database => $db, redis => 'skipped' }), 'body';
        is http_get($rt->url('/healthz/ping'))->{content}, 'pong', 'ping: pong';
    };

    for my $plugin (qw(check_http check_curl)) {
        subtest "$phase: $plugin exits " . ($db eq 'ok' ? '0' : '2') => sub {
            subtest_requires(@{ $need{$plugin} }) or return;
            my @lines = grep { (shellwords($_))[0] =~ m{/\Q$plugin\E\z} } @CHECK_LINES;
            is scalar(@lines), 1, "eg/check_http.txt has a $plugin line" or return;
            my @argv = shellwords($lines[0]);
            $argv[0] =~ s{^/usr/lib/nagios/plugins(?=/)}{$HETest::Web::PLUGIN_DIR};
            my ($rc, $out) = run_as_server($rt, @argv);
            is $rc, $db eq 'ok' ? 0 : 2, "exit " . ($db eq 'ok' ? '0 (OK)' : '2 (CRITICAL)')
                or diag "@argv\n$out";
            like $out, $db eq 'ok' ? qr/^HTTP OK\b/ : qr/^HTTP CRITICAL\b/, 'output' and note $out;
        };
    }

    subtest "$phase: blackbox exporter probe_success" => sub {
        subtest_requires(@{ $need{blackbox} }) or return;
        for my $job (@jobs) {
            my $want = $job->{module} eq 'rt_ping' || $db eq 'ok' ? 1 : 0;
            my $r = http_get($job->{url});
            is $r->{status}, 200, "scrape $job->{name}" or diag $r->{content};
            my ($ok) = ($r->{content} // '') =~ /^probe_success (\S+)$/m;
            my ($sc) = ($r->{content} // '') =~ /^probe_http_status_code (\S+)$/m;
            is $ok, $want, "$job->{name}: probe_success $want (HTTP $sc)";
        }
    };

    subtest "$phase: HAProxy backends" => sub {
        subtest_requires(@{ $need{haproxy} }) or return;
        my %want = ('rt/rt1' => 'UP', 'rt_status/rt1' => $db eq 'ok' ? 'UP' : 'DOWN');
        # inter 5s, fall 2 / rise 2: a change shows after about 10 s
        my $st = poll(45, sub {
            my $s = haproxy_states();
            (grep { ($s->{$_} // '') ne $want{$_} } keys %want) ? undef : $s;
        }, 0.5) // haproxy_states();
        is $st->{$_}, $want{$_}, "$_ $want{$_}" for sort keys %want;
        my $r = http_get("http://127.0.0.1:$fe_port/healthz/ping");
        is $r->{content}, 'pong', 'RT answers through the frontend';
        $r = http_get("http://127.0.0.1:$fe_port/healthz/status");
        is $r->{status}, $code, "status through the frontend: $code";
    };
}

phase('database up', 'ok', time);
$rt->stop_pg;
phase('database down', 'fail', time);
$rt->start_pg;
phase('database back', 'ok', time);

$_->stop for grep { $_ } $hap, $bb;
$rt->cleanup;
done_testing;
