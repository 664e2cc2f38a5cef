#!perl
# Processes end cleanly right after a check (issue 8): a worker that exits
# (Starman recycling it) while the check is still deriving a SCRAM key, or
# that unloads the module, does not crash - the check is in the checker's
# process, not on a thread of ours.
use strict;
use warnings;

use FindBin;
use POSIX ();
use Test::More;
use lib "$FindBin::Bin/lib";
use HEBuild qw(need_backend);
use HETest::Servers qw(start_fake_pg);
use RT::Extension::HealthEndpoint;

need_backend('Pg') or do { done_testing; exit 1 };

# SCRAM with enough iterations that libpq derives the key for seconds
my $pg = start_fake_pg(scram_iterations => 20_000_000);
my %db = (type => 'Pg', host => '127.0.0.1', port => $pg->port, name => 'x',
          user => 'x', password => 'secret', extra => { sslmode => 'disable' });

sub child {
    my ($then) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $app = RT::Extension::HealthEndpoint->wrap(sub { [ 200, [], [] ] },
            cache_seconds => 0, timeout => 0.3, db => \%db, logger => sub { });
        my $r = $app->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/status' });
        $r->[0] == 503 or POSIX::_exit(3);
        $then->($app);
        exit 0;                         # END blocks, global destruction
    }
    waitpid $pid, 0;
    return $?;
}

my @crashed;
for my $i (1 .. 12) {
    my $st = child(sub { });
    push @crashed, "exit $i: status $st" if $st != 0;
}
is_deeply \@crashed, [], '12 exits right after a check (SCRAM still deriving): no crash'
    or diag join "\n", @crashed;

my $st = child(sub {
    undef $_[0];                        # the wrapper goes first
    require DynaLoader;
    my ($i) = grep { $DynaLoader::dl_modules[$_] eq 'RT::Extension::HealthEndpoint' }
              0 .. $#DynaLoader::dl_modules;
    defined $i or POSIX::_exit(4);
    DynaLoader::dl_unload_file($DynaLoader::dl_librefs[$i]) or POSIX::_exit(5);
});
is $st, 0, 'dl_unload_file of the module after such a check: no crash';
done_testing;
