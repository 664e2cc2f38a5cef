#!perl
# Under Starman (issue 8): workers that recycle every few requests share
# one checker, which outlives the worker that started it; it ends within
# 2 s when the master ends, by TERM or by SIGKILL.
use strict;
use warnings;

use FindBin;
use HTTP::Tiny;
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use HETest::Proc qw(scratch_dir);
use HETest::Ps qw(checkers wait_for proc_status);
use HETest::Servers qw(:all);
use HEBuild qw(skip_all_if_omitted);
use RT::Extension::HealthEndpoint;

my %built = map { $_ => 1 } RT::Extension::HealthEndpoint::backends();
skip_all_if_omitted('Pg');
need_server(sub { $built{Pg} }, 'built without the Pg backend');
need_server(\&have_postgres, 'PostgreSQL server binaries');
need_server('starman', 'starman');

my $pg = start_postgres();
my $blib = "$FindBin::Bin/../blib";
my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0);

sub starman {
    my $dir = scratch_dir('starman-state');
    chmod 0777, $dir;
    my $s = start_starman(app => "$FindBin::Bin/../bench/soak.psgi", workers => 2,
        inc => [ "$blib/lib", "$blib/arch" ],
        args => [ '--preload-app', '--max-requests', 5 ],
        env => { HEB_PG => join(':', '127.0.0.1', $pg->port, $pg->dbname,
                                $pg->user, $pg->password),
                 HEB_CACHE => 0.2, HEB_TIMEOUT => 1,
                 HEB_STATE => "$dir/he.state" });
    return ($s, "$dir/he.state");
}

for my $how (qw(TERM KILL)) {
    subtest "workers recycling, then SIG$how to the master" => sub {
        my ($s, $state) = starman();
        my $url = 'http://127.0.0.1:' . $s->port . '/healthz/status';
        my (%codes, %checker);
        for (1 .. 40) {                 # each worker lives for 5 requests
            $codes{ $http->get($url)->{status} }++;
            $checker{$_}++ for checkers($state);
            sleep 0.05;
        }
        is_deeply \%codes, { 200 => 40 }, '40 answers while workers recycle: 200';
        is scalar(keys %checker), 1, 'one and the same checker throughout';
        my ($pid) = keys %checker;
        my %st = proc_status($pid);
        isnt $st{PPid}, $s->pid, 'not a child of the master';
        kill $how, $s->pid;
        my $t0 = time;
        ok wait_for(3, sub { !grep { $_ == $pid } checkers($state) }),
            "SIG$how to the master: the checker exits";
        cmp_ok time - $t0, '<=', 2, sprintf 'within 2 s (%.2f s)', time - $t0;
        $s->stop;
    };
}
done_testing;
