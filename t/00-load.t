use strict;
use warnings;
use Test::More;

use_ok('RT::Extension::HealthEndpoint');
my @backends = RT::Extension::HealthEndpoint::backends();
ok(scalar(grep { $_ eq 'Oracle(DBI)' } @backends), 'the DBI path is always there');
diag("RT::Extension::HealthEndpoint $RT::Extension::HealthEndpoint::VERSION,"
     . " Perl $], backends built: @backends");

# CI builds every backend: a missing library there is a broken install.
if (($ENV{CI} // '') eq 'true') {
    for my $b (qw(Pg mysql SQLite Redis)) {
        ok(scalar(grep { $_ eq $b } @backends), "CI: backend $b is built");
    }
}
done_testing;
