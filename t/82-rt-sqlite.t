#!/usr/bin/perl
# End to end: a real RT (HETEST_RT_HOME) on SQLite (sessions in files
# under MasonSessionDir), plugin from blib.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use HETest::RT;
BEGIN { HETest::RT->require_or_skip(db => 'SQLite') }
use Test::More;

my %ok   = (database => 'ok',   redis => 'skipped');
my %fail = (database => 'fail', redis => 'skipped');

sub file_gone_and_back {
    my ($rt, $what) = @_;
    my $http = $rt->http;
    my $file = $rt->sqlite_file;
    ok -f $file, "$what: database file exists ($file)";
    $rt->check_status('/healthz/status', \%ok);

    my $mark = $rt->rt_log_mark;
    rename $file, "$file.moved" or die "rename: $!";
    my $r = $rt->check_status('/healthz/status', \%fail);
    unlike $r->{content}, qr/unable|open|file|error/i, 'no error text in the body';
    ok !-e $file, 'the check did not create an empty database file';
    $rt->check_ping('/healthz/ping');
    my $log = $rt->wait_until(5, sub {
        my $l = $rt->rt_log_since($mark);
        $l =~ /database check failed/ ? $l : undef;
    }) // $rt->rt_log_since($mark);
    like $log, qr/\[error\]: [^\n]*database check failed/, 'RT log: "database check failed"';
    my ($line) = $log =~ /^([^\n]*database check failed[^\n]*)$/m;
    note "log: " . ($line // '');

    # a file that is not an SQLite database at all
    open my $fh, '>', $file or die "write $file: $!";
    print {$fh} "this is not an SQLite database\n" x 200;
    close $fh;
    chmod 0644, $file;
    $rt->check_status('/healthz/status', \%fail, 503, 'status with a garbage file');
    unlink $file;

    rename "$file.moved", $file or die "rename back: $!";
    ok $rt->wait_until(10, sub { $http->get($rt->url('/healthz/status'))->{status} == 200 }),
        'status ok again once the file is back';
    $rt->check_status('/healthz/status', \%ok);
}

subtest 'absolute DatabaseName' => sub {
    my $rt = HETest::RT->new(
        db     => 'SQLite',
        config => { HealthEndpoint_Timeout => 1, HealthEndpoint_CacheSeconds => 0 },
    );
    $rt->start;
    note HETest::RT::rt_description() . ' on ' . $rt->base_url . ', database ' . $rt->sqlite_file;
    $rt->check_loaded_from;
    $rt->check_ping('/healthz/ping');
    $rt->check_405('/healthz/status');

    # sessions are files here: probes must not add any
    my $before = $rt->session_count;
    my $bad = 0;
    for (1 .. 200) {
        for my $p ('/healthz/ping', '/healthz/status') {
            $bad++ if $rt->http->get($rt->url($p))->{status} != 200;
        }
    }
    is $bad, 0, '400 probes: all 200';
    is $rt->session_count, $before, 'no session files created';
    $rt->http->get($rt->url('/NoAuth/Login.html')) for 1 .. 2;
    is $rt->session_count, $before + 2, 'control: RT pages create session files';

    file_gone_and_back($rt, 'absolute');
    $rt->cleanup;
};

subtest 'relative DatabaseName resolves under $RT::VarPath' => sub {
    my $rt = HETest::RT->new(
        db          => 'SQLite',
        sqlite_name => 'relative-rt5.db',
        config      => { HealthEndpoint_Timeout => 1, HealthEndpoint_CacheSeconds => 0 },
    );
    $rt->start;
    is $rt->sqlite_file, $rt->dir . '/var/relative-rt5.db', 'rt-setup-database put it under VarPath';
    ok !-e $rt->dir . '/relative-rt5.db', 'not in the server working directory';
    file_gone_and_back($rt, 'relative');
    $rt->cleanup;
};

done_testing;
