# bench/soak.psgi - a stub PSGI app wrapped by RT::Extension::HealthEndpoint,
# for bench/soak and bench/flood (started by them under Starman).
#
# Everything comes from the environment, so the same file serves every run:
#   HEB_PG       host:port:dbname:user:password  (unset: no database check)
#   HEB_REDIS    host:port[:password]            (unset: Redis skipped)
#   HEB_CACHE    cache_seconds (default 1)
#   HEB_TIMEOUT  timeout (default 2)
#   HEB_LOG      file the wrapper's logger appends "[level] message" to
#   HEB_STATE    the shared state file (unset: each process its own checker)
# The wrapped app answers 200 "app" to anything that is not a health path.
use strict;
use warnings;
use IO::Handle;
use RT::Extension::HealthEndpoint;

my $app = sub { [ 200, [ 'Content-Type' => 'text/plain' ], ['app'] ] };

my %opt = (
    cache_seconds => $ENV{HEB_CACHE} // 1,
    timeout       => $ENV{HEB_TIMEOUT} // 2,
    state_file    => $ENV{HEB_STATE},
);
if (my $pg = $ENV{HEB_PG}) {
    my ($host, $port, $name, $user, $password) = split /:/, $pg, 5;
    $opt{db} = { type => 'Pg', host => $host, port => $port, name => $name,
                 user => $user, password => $password };
}
if (my $r = $ENV{HEB_REDIS}) {
    my ($host, $port, $password) = split /:/, $r, 3;
    $opt{redis} = { server => "$host:$port",
                    (defined $password ? (password => $password) : ()) };
}
if (my $file = $ENV{HEB_LOG}) {
    open my $fh, '>>', $file or die "HEB_LOG $file: $!";
    $fh->autoflush(1);
    $opt{logger} = sub { print {$fh} "[$_[0]] [pid $$] $_[1]\n" };
}

RT::Extension::HealthEndpoint->wrap($app, %opt);
